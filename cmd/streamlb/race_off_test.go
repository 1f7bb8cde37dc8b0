//go:build !race

package main

// buildFlags build the binary under test as this test binary was built, so
// that the go command finds every package compiled in its cache and only
// links.
var buildFlags []string

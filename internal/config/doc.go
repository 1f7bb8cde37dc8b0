// Package config loads and validates streamlb's configuration: the
// "StreamLoadBalancer" block of an EvoStream Web Services plugins.json or
// webconfig.json.
//
// Three forms of file are accepted, all of them JSON with comments and
// trailing commas (HuJSON), as the EvoStream documentation prints them:
//
//   - a whole plugins.json or webconfig.json, whose top-level object holds a
//     "StreamLoadBalancer" key among other plugins' blocks (those are
//     ignored);
//   - a file holding only {"StreamLoadBalancer": {...}};
//   - the fragment alone, as the documentation prints it:
//     "StreamLoadBalancer": {...},
//
// Decoding is strict: an unknown key anywhere inside the block is an error.
// Every problem found is reported, not only the first, as an [*Error] whose
// message starts with FILE:LINE:COL and names the key path, for example
//
//	plugins.json:12:9: parameters.destination_ems_apiproxies[1].ewsPort: want a number, got string
//
// Array indexes in key paths count from 0. Passwords and tokens never appear
// in an error message.
package config

// Package statusapi serves what operators look at: the status JSON, the
// pause and resume routes for maintenance, health and readiness, and the
// live dashboard. It reads the controller's one snapshot.
package statusapi

// Package statusapi serves what operators look at: the status JSON, the
// pause and resume routes for maintenance, health and readiness, and the
// live dashboard with its list of recent events. Everything it shows comes
// from the controller's one snapshot, which holds no credential.
//
// The dashboard (Dashboard, RegisterDashboard) is one page built into the
// binary: html/template renders the first view on the server, and a small
// script (assets/dashboard.js) keeps it current by polling the status and
// events routes. The events are derived from successive snapshots each
// time the page or GET /api/v1/events is read; no goroutine is started.
package statusapi

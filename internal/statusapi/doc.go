// Package statusapi serves what operators look at: the status JSON (whole,
// or the part a query selects: by state, member, stream glob, attention
// first, paged with a cursor), the controller's journal (a JSON page, or a
// server-sent event stream resumable with Last-Event-ID), the pause and
// resume routes for maintenance, health and readiness, and the live
// dashboard. Everything it shows comes from the controller's status and
// journal, which hold no credential.
//
// The dashboard (Dashboard, RegisterDashboard) is one page built into the
// binary: html/template renders the first view on the server, and a small
// script (assets/dashboard.js) keeps it current: it asks the status route
// for the one page of streams it shows, follows the journal's event
// stream, and reads GET /api/v1/load when placement serves it. The journal
// is the controller's: it is kept whether or not a page is open, and this
// package starts no goroutine of its own.
package statusapi

// Package play sends viewers to the least-loaded member that holds their
// stream: GET /play/{stream} answers the chosen member's player URLs (or
// redirects an HLS or DASH player there), and GET /api/v1/load shows what
// the choice is based on.
//
// A Service owns one poller goroutine per member, started by Run (and by
// SetMembers while Run runs), each ended by its own cancel when the
// member goes and all by Run's context. Every poll interval a poller
// reads its member's listStreams (outbound network streams are players,
// except replica pulls: those carrying streamlb's user agent or coming
// from a member's address), getBandwidth, httpClientsConnected (HLS and
// DASH sessions) and, for a member without maxViewers,
// getConnectionsCountLimit at the first good poll and every twelfth
// after, and stores the result as an immutable Sample, then hands it to
// the OnSample hook. A reading starts every poll interval, or as soon as
// the previous one ends when that took longer; a member's readings never
// overlap. A failing member is polled with capped, jittered backoff from
// the end of its failed reading; its last sample goes stale and the member
// ineligible.
//
// Service.mu guards the member list, every member's Target (latest
// sample, pending estimate), the sticky map and the random source. A play
// request takes the holders from the controller (outside that lock),
// then, under it, runs Choose, a pure function of the holders, the
// targets, the time and the random draws, and adds one player at the
// stream's bitrate to the chosen member's pending estimate, which each
// fresh sample halves. Readers (the load document, the metrics
// collector) copy under the lock and change nothing. The controller is
// only ever called outside the lock (Holders, WantCopy, OnSample), so its
// lock is never taken inside ours.
package play

// Package controller keeps a group of EMS members holding the same source
// streams. It compares the desired state (every source stream on every other
// member) with what each member lists, and converges them with replica pulls
// and removals: events are hints, periodic resyncs are the truth.
package controller

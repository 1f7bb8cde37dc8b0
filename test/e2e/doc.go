// Package e2e holds streamlb's end-to-end tests: the real balancer, in
// process or as a program, against emulated EMS members on their own
// loopback addresses, talking HTTP as in production.
package e2e

// Package loadtest drives a running BFF over real HTTP on loopback and
// reports what the benchmarks page (docs/benchmarks.md) promises: request
// rates and latency percentiles of the screen queries with a hot and a
// cold cache, a mix of reads and keyed mutations checked for stale reads,
// SSE commit-to-client latency and lost events over many open streams,
// keyed placeOrder throughput, the server's resident memory, and a
// ceiling to compare the screens with: a bare net/http handler that does
// one Redis GET and writes the bytes. tools/bffload (a module of its own) is its command line.
package loadtest

// Package clustertest tests the running local cluster of `make cluster`
// (3 instances behind HAProxy, a Redis Cluster of 3 masters and 3
// replicas, PgBouncer in transaction mode): read-your-writes across
// instances, a rolling restart of the instances under 200 event streams
// and a keyed write load, a Redis master killed with SIGKILL, and a
// PgBouncer restart. Its tests carry the build tag "cluster" and run with
// `make cluster-test`; they read the cluster's addresses from
// bin/cluster/env.
package clustertest

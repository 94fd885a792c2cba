package ratelimit

// GCRAHash is the SHA1 of the GCRA script the limiter runs.
var GCRAHash = gcra.Hash()

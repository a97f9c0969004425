//go:build !unix

package jobs

// LockMerge always succeeds where advisory file locks are not available: two
// shards that finish at once may then both merge (each merge rewrites the same
// summary).
func LockMerge(dir string) (unlock func(), ok bool, err error) { return func() {}, true, nil }

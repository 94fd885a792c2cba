package postgres

// Queued returns the statements queued in b and their arguments, in order.
func (b *Batch) Queued() (sqls []string, args [][]any) {
	for _, r := range b.reads {
		sqls = append(sqls, r.sql)
		args = append(args, r.args)
	}
	return sqls, args
}

// AcquiredConns is the number of the store's connections in use.
func (s *Store) AcquiredConns() int32 { return s.pool.Stat().AcquiredConns() }

//go:build !linux

package loadtest

import (
	"sync"
	"time"
)

// readFanStreams reads streams until the returned stop is called (stop
// waits for the readers and closes the connections; it may be called more
// than once): one goroutine per stream here (Linux reads them with epoll
// loops), each frame parsed as it arrives.
func readFanStreams(streams []*fanStream) (stop func(), err error) {
	var wg sync.WaitGroup
	for _, f := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				n, err := f.conn.Read(buf)
				now := time.Now()
				if n > 0 {
					if derr := f.received(buf[:n], now); derr != nil {
						f.ended(derr, now)
						return
					}
				}
				if err != nil {
					f.ended(err, now)
					return
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, f := range streams {
				f.closed.Store(true)
				f.conn.Close()
			}
			wg.Wait()
		})
	}, nil
}

package loadtest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// readFanStreams reads streams until the returned stop is called (stop
// waits for the reader and closes the connections; it may be called more
// than once). It reads them all with one epoll loop instead of a
// goroutine per stream: a delivery then costs the client one read system
// call (a goroutine per stream pays a wake-up, the read, and a second read
// that finds nothing before it parks), and during a burst of a thousand
// deliveries the loop stays awake and takes many streams per epoll_wait
// (one loop per CPU cost the client a third more CPU in scenario g: each
// slept and was woken more often). The load generator shares the
// machine's cores with the server, so what it saves goes to the server.
// The bytes are decoded and every frame parsed as they arrive (see
// fanStream.line); the receive time is taken right after the read that
// returned them.
func readFanStreams(streams []*fanStream) (stop func(), err error) {
	fds := make([]int, len(streams))
	for i, f := range streams {
		// The loop owns a duplicate of the socket; closing the
		// connection takes it out of the Go runtime's poller.
		rc, err := f.conn.(syscall.Conn).SyscallConn()
		if err != nil {
			return nil, err
		}
		var derr error
		if err := rc.Control(func(fd uintptr) { fds[i], derr = syscall.Dup(int(fd)) }); err != nil {
			return nil, err
		}
		if derr != nil {
			for _, fd := range fds[:i] {
				syscall.Close(fd)
			}
			return nil, fmt.Errorf("dup: %w", derr)
		}
		syscall.CloseOnExec(fds[i])
		f.conn.Close()
	}
	var halt atomic.Bool
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		for i, fd := range fds {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(i)}
			if err = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
				syscall.Close(ep)
				break
			}
		}
	}
	if err != nil {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("epoll: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer syscall.Close(ep)
		pollStreams(ep, streams, fds, &halt)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, f := range streams {
				f.closed.Store(true)
			}
			halt.Store(true)
			wg.Wait()
			for _, fd := range fds {
				syscall.Close(fd)
			}
		})
	}, nil
}

// pollStreams is the event loop: it reads the streams registered with ep
// (level-triggered, one read per readiness) until halt is set.
func pollStreams(ep int, streams []*fanStream, fds []int, halt *atomic.Bool) {
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for !halt.Load() {
		n, err := syscall.EpollWait(ep, events, 50)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			for _, f := range streams {
				f.ended(fmt.Errorf("epoll_wait: %w", err), time.Now())
			}
			return
		}
		for _, ev := range events[:n] {
			i := int(ev.Fd)
			f := streams[i]
			m, err := syscall.Read(fds[i], buf)
			now := time.Now()
			switch {
			case m > 0:
				if err := f.received(buf[:m], now); err != nil {
					f.ended(err, now)
					_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, fds[i], nil)
				}
				continue
			case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
				continue
			case err == nil: // EOF
				err = errors.New("EOF")
			}
			if f.dec.ended { // the response's last chunk came first
				err = fmt.Errorf("end of response (%w)", err)
			}
			f.ended(err, now)
			_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, fds[i], nil)
		}
	}
}

package telemetry

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports the statistics of a pgx pool at each scrape, all
// labelled pool="<name>":
//
//   - bff_pgxpool_acquired_conns, bff_pgxpool_idle_conns,
//     bff_pgxpool_constructing_conns, bff_pgxpool_total_conns,
//     bff_pgxpool_max_conns: gauges
//   - bff_pgxpool_acquires_total, bff_pgxpool_acquire_duration_seconds_total,
//     bff_pgxpool_empty_acquires_total (acquires that had to wait),
//     bff_pgxpool_empty_acquire_wait_seconds_total,
//     bff_pgxpool_canceled_acquires_total, bff_pgxpool_new_conns_total,
//     bff_pgxpool_max_lifetime_destroys_total,
//     bff_pgxpool_max_idle_destroys_total: counters
type PoolCollector struct {
	pool  PoolStater
	descs poolDescs
}

type poolDescs struct {
	acquired, idle, constructing, total, max                  *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires, emptyWaitSeconds *prometheus.Desc
	canceled, newConns, lifetimeDestroys, idleDestroys        *prometheus.Desc
}

// PoolStater reports a pgx pool's statistics (a *pgxpool.Pool, or the
// Postgres store in front of one).
type PoolStater interface {
	Stat() *pgxpool.Stat
}

// NewPoolCollector returns the collector of pool, labelled pool=name.
func NewPoolCollector(name string, pool PoolStater) *PoolCollector {
	labels := prometheus.Labels{"pool": name}
	d := func(metric, help string) *prometheus.Desc {
		return prometheus.NewDesc("bff_pgxpool_"+metric, help, nil, labels)
	}
	return &PoolCollector{pool: pool, descs: poolDescs{
		acquired:         d("acquired_conns", "Connections currently acquired from the pool."),
		idle:             d("idle_conns", "Idle connections in the pool."),
		constructing:     d("constructing_conns", "Connections being opened."),
		total:            d("total_conns", "Connections in the pool (acquired, idle and constructing)."),
		max:              d("max_conns", "Maximum size of the pool."),
		acquires:         d("acquires_total", "Successful acquires from the pool."),
		acquireSeconds:   d("acquire_duration_seconds_total", "Total time spent in successful acquires."),
		emptyAcquires:    d("empty_acquires_total", "Successful acquires that waited for a connection because the pool was empty."),
		emptyWaitSeconds: d("empty_acquire_wait_seconds_total", "Total time spent waiting in acquires that found the pool empty."),
		canceled:         d("canceled_acquires_total", "Acquires cancelled by their context."),
		newConns:         d("new_conns_total", "Connections opened."),
		lifetimeDestroys: d("max_lifetime_destroys_total", "Connections closed for exceeding their maximum lifetime."),
		idleDestroys:     d("max_idle_destroys_total", "Connections closed for exceeding their maximum idle time."),
	}}
}

// RegisterPool registers a [PoolCollector] for pool under name (e.g.
// "main").
func (m *Metrics) RegisterPool(name string, pool PoolStater) error {
	if m == nil {
		return nil
	}
	return m.Register(NewPoolCollector(name, pool))
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, x := range []*prometheus.Desc{d.acquired, d.idle, d.constructing, d.total, d.max,
		d.acquires, d.acquireSeconds, d.emptyAcquires, d.emptyWaitSeconds,
		d.canceled, d.newConns, d.lifetimeDestroys, d.idleDestroys} {
		ch <- x
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	d := c.descs
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	counter := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v)
	}
	gauge(d.acquired, float64(s.AcquiredConns()))
	gauge(d.idle, float64(s.IdleConns()))
	gauge(d.constructing, float64(s.ConstructingConns()))
	gauge(d.total, float64(s.TotalConns()))
	gauge(d.max, float64(s.MaxConns()))
	counter(d.acquires, float64(s.AcquireCount()))
	counter(d.acquireSeconds, s.AcquireDuration().Seconds())
	counter(d.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(d.emptyWaitSeconds, s.EmptyAcquireWaitTime().Seconds())
	counter(d.canceled, float64(s.CanceledAcquireCount()))
	counter(d.newConns, float64(s.NewConnsCount()))
	counter(d.lifetimeDestroys, float64(s.MaxLifetimeDestroyCount()))
	counter(d.idleDestroys, float64(s.MaxIdleDestroyCount()))
}

package server

import (
	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/webhooks"
)

// assembleWebhooks builds the outbound webhooks: the staff operations
// served through GraphQL and, unless WEBHOOK_WORKERS=0, the worker that
// sends the deliveries (started by startBackground).
func (s *Server) assembleWebhooks(opt Options) error {
	cfg := s.cfg
	m := webhooks.NewMetrics(s.store)
	if err := m.Register(s.metrics.Registry()); err != nil {
		return err
	}
	if cfg.WebhookWorkers > 0 {
		w, err := webhooks.NewWorker(webhooks.Config{Store: s.store, Workers: cfg.WebhookWorkers,
			PerEndpoint: cfg.WebhookEndpointConcurrency, Timeout: cfg.WebhookTimeout, RetryFor: cfg.WebhookRetryFor,
			InitialBackoff: cfg.WebhookBackoff, MaxBackoff: cfg.WebhookBackoffMax, DisableAfter: cfg.WebhookDisableAfter,
			PollInterval: cfg.WebhookPollInterval, AllowPrivate: cfg.WebhookAllowPrivate, Metrics: m, Observe: opt.WebhookObserve, Logger: s.log,
			// A span per attempt, with the outbound call's client span
			// (and its traceparent header) under it.
			Transport: telemetry.Transport(webhooks.NewTransport(cfg.WebhookAllowPrivate, cfg.WebhookTimeout), s.tracing.Options()...),
			Tracer:    s.tracing.Provider().Tracer("github.com/shop/bff/internal/webhooks")})
		if err != nil {
			return err
		}
		s.hooks = w
	}
	s.hooksAdmin = webhooks.NewAdmin(webhooks.AdminConfig{Store: s.store, AllowPrivate: cfg.WebhookAllowPrivate,
		SecretOverlap: cfg.WebhookSecretOverlap, Wake: s.refreshHooks})
	return nil
}

// refreshHooks makes the local webhook worker look for due deliveries now
// (after staff changed endpoints or queued deliveries).
func (s *Server) refreshHooks() {
	if s.hooks != nil {
		s.hooks.Refresh()
	}
}

// wakeHooks makes the local webhook worker look for due deliveries now,
// unless it knows no enabled endpoint (after a commit).
func (s *Server) wakeHooks() {
	if s.hooks != nil {
		s.hooks.Wake()
	}
}

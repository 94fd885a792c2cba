package webhooks

import (
	"context"
	"encoding/base64"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// MaxDescriptionLength is the longest endpoint description accepted.
const MaxDescriptionLength = 500

// AdminConfig configures an [Admin].
type AdminConfig struct {
	// Store holds the endpoints. Required.
	Store *postgres.Store
	// AllowPrivate accepts endpoint URLs on loopback, private and
	// link-local addresses (development).
	AllowPrivate bool
	// SecretOverlap is how long the previous secret keeps signing after a
	// rotation (WEBHOOK_SECRET_OVERLAP). Default
	// config.DefaultWebhookSecretOverlap.
	SecretOverlap time.Duration
	// Resolver resolves endpoint hosts at registration. Default
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Wake is called after an endpoint was created or enabled, or
	// deliveries were queued by staff (the local worker's Refresh).
	// Optional.
	Wake func()
}

// Admin is what staff do with endpoints and deliveries through GraphQL;
// every method checks that the viewer is STAFF.
type Admin struct {
	cfg AdminConfig
}

// NewAdmin returns the staff operations over cfg.Store.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.SecretOverlap <= 0 {
		cfg.SecretOverlap = config.DefaultWebhookSecretOverlap
	}
	return &Admin{cfg: cfg}
}

// requireStaff is the access rule of every webhook operation.
func requireStaff(v *order.User) error {
	if v == nil {
		return order.Unauthenticated()
	}
	if v.Role != order.RoleStaff {
		return order.Forbidden("webhook endpoints are managed by staff only")
	}
	return nil
}

func (a *Admin) checkURL(ctx context.Context, raw, field string) error {
	return CheckURL(ctx, raw, field, a.cfg.AllowPrivate, a.cfg.Resolver)
}

func checkTypes(ts []order.EventType, field string) ([]order.EventType, error) {
	if len(ts) == 0 {
		return nil, order.BadInput(field, order.ConstraintRequired, "name at least one event type")
	}
	seen := map[order.EventType]bool{}
	out := make([]order.EventType, 0, len(ts))
	for i, t := range ts {
		if seen[t] {
			return nil, order.BadInput(field+"["+strconv.Itoa(i)+"]", order.ConstraintDuplicate, "event type "+string(t)+" is listed twice")
		}
		seen[t] = true
		out = append(out, t)
	}
	return out, nil
}

func checkDescription(d *string, field string) error {
	if d != nil && utf8.RuneCountInString(*d) > MaxDescriptionLength {
		return order.BadInput(field, order.ConstraintLength, "the description is too long").With("max", MaxDescriptionLength)
	}
	return nil
}

// Endpoints lists the endpoints.
func (a *Admin) Endpoints(ctx context.Context, v *order.User) ([]*model.WebhookEndpoint, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	es, err := a.cfg.Store.WebhookEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*model.WebhookEndpoint, len(es))
	for i, e := range es {
		out[i] = Endpoint(e)
	}
	return out, nil
}

// Endpoint returns one endpoint.
func (a *Admin) Endpoint(ctx context.Context, v *order.User, id string) (*model.WebhookEndpoint, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	e, err := a.cfg.Store.WebhookEndpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	return Endpoint(e), nil
}

// Create registers an endpoint with a fresh secret.
func (a *Admin) Create(ctx context.Context, v *order.User, in model.CreateWebhookEndpointInput) (*model.CreateWebhookEndpointPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	if err := a.checkURL(ctx, in.URL, "input.url"); err != nil {
		return nil, err
	}
	types, err := checkTypes(in.EventTypes, "input.eventTypes")
	if err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description, "input.description"); err != nil {
		return nil, err
	}
	desc := ""
	if in.Description != nil {
		desc = *in.Description
	}
	secret := NewSecret()
	e, err := a.cfg.Store.CreateWebhookEndpoint(ctx, postgres.NewWebhookEndpoint{URL: in.URL, Description: desc,
		EventTypes: types, Secret: secret})
	if err != nil {
		return nil, err
	}
	if a.cfg.Wake != nil { // a worker that knew no endpoint listens again
		a.cfg.Wake()
	}
	return &model.CreateWebhookEndpointPayload{Endpoint: Endpoint(e), Secret: secret}, nil
}

// Update changes an endpoint.
func (a *Admin) Update(ctx context.Context, v *order.User, id string, in model.UpdateWebhookEndpointInput) (*model.WebhookEndpointPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	p := postgres.WebhookEndpointPatch{URL: in.URL, Description: in.Description, Enabled: in.Enabled}
	if in.URL != nil {
		if err := a.checkURL(ctx, *in.URL, "input.url"); err != nil {
			return nil, err
		}
	}
	if in.EventTypes != nil {
		types, err := checkTypes(in.EventTypes, "input.eventTypes")
		if err != nil {
			return nil, err
		}
		p.EventTypes = types
	}
	if err := checkDescription(in.Description, "input.description"); err != nil {
		return nil, err
	}
	e, err := a.cfg.Store.UpdateWebhookEndpoint(ctx, id, p)
	if err != nil {
		return nil, err
	}
	if in.Enabled != nil && *in.Enabled && a.cfg.Wake != nil {
		a.cfg.Wake()
	}
	return &model.WebhookEndpointPayload{Endpoint: Endpoint(e)}, nil
}

// Rotate gives an endpoint a new secret; the old one signs too for the
// configured overlap.
func (a *Admin) Rotate(ctx context.Context, v *order.User, id string) (*model.RotateWebhookSecretPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	secret := NewSecret()
	e, err := a.cfg.Store.RotateWebhookSecret(ctx, id, secret, a.cfg.SecretOverlap)
	if err != nil {
		return nil, err
	}
	return &model.RotateWebhookSecretPayload{Endpoint: Endpoint(e), Secret: secret}, nil
}

// Delete deletes an endpoint.
func (a *Admin) Delete(ctx context.Context, v *order.User, id string) (*model.DeleteWebhookEndpointPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	if err := a.cfg.Store.DeleteWebhookEndpoint(ctx, id); err != nil {
		return nil, err
	}
	return &model.DeleteWebhookEndpointPayload{DeletedID: id}, nil
}

// Redeliver queues a delivery again.
func (a *Admin) Redeliver(ctx context.Context, v *order.User, id string) (*model.WebhookDeliveryPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	d, err := a.cfg.Store.RedeliverWebhook(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.cfg.Wake != nil {
		a.cfg.Wake()
	}
	return &model.WebhookDeliveryPayload{Delivery: Delivery(d)}, nil
}

// Replay queues the events since a time for an endpoint.
func (a *Admin) Replay(ctx context.Context, v *order.User, endpointID string, since time.Time) (*model.ReplayWebhooksPayload, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	n, err := a.cfg.Store.ReplayWebhooks(ctx, endpointID, since)
	if err != nil {
		return nil, err
	}
	if a.cfg.Wake != nil {
		a.cfg.Wake()
	}
	return &model.ReplayWebhooksPayload{Queued: n}, nil
}

// Deliveries returns a page of an endpoint's deliveries, newest first.
func (a *Admin) Deliveries(ctx context.Context, v *order.User, endpointID string, status *model.WebhookDeliveryStatus, first *int, after *string) (*model.WebhookDeliveryConnection, error) {
	if err := requireStaff(v); err != nil {
		return nil, err
	}
	n := 20
	if first != nil {
		n = *first
	}
	if n < 1 || n > 100 {
		return nil, order.OutOfRange("first", 1, 100)
	}
	var before int64
	if after != nil {
		id, ok := decodeCursor(*after)
		if !ok {
			return nil, order.BadInput("after", order.ConstraintFormat, "after is not a cursor of this list")
		}
		before = id
	}
	state := ""
	if status != nil {
		state = stateOf(*status)
	}
	ds, more, err := a.cfg.Store.WebhookDeliveries(ctx, endpointID, state, n, before)
	if err != nil {
		return nil, err
	}
	c := &model.WebhookDeliveryConnection{Edges: make([]*model.WebhookDeliveryEdge, len(ds)), PageInfo: &model.PageInfo{HasNextPage: more}}
	for i, d := range ds {
		c.Edges[i] = &model.WebhookDeliveryEdge{Cursor: encodeCursor(d.ID), Node: Delivery(d)}
	}
	if len(ds) > 0 {
		end := c.Edges[len(ds)-1].Cursor
		c.PageInfo.EndCursor = &end
	}
	return c, nil
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("wd:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 4 || string(b[:3]) != "wd:" {
		return 0, false
	}
	id, err := strconv.ParseInt(string(b[3:]), 10, 64)
	if err != nil || id <= 0 || encodeCursor(id) != s {
		return 0, false
	}
	return id, true
}

func stateOf(s model.WebhookDeliveryStatus) string {
	switch s {
	case model.WebhookDeliveryStatusDelivered:
		return postgres.DeliveryDelivered
	case model.WebhookDeliveryStatusFailed:
		return postgres.DeliveryFailed
	case model.WebhookDeliveryStatusDead:
		return postgres.DeliveryDead
	}
	return postgres.DeliveryPending
}

func statusOf(state string) model.WebhookDeliveryStatus {
	switch state {
	case postgres.DeliveryDelivered:
		return model.WebhookDeliveryStatusDelivered
	case postgres.DeliveryFailed:
		return model.WebhookDeliveryStatusFailed
	case postgres.DeliveryDead:
		return model.WebhookDeliveryStatusDead
	}
	return model.WebhookDeliveryStatusPending
}

// Endpoint is the GraphQL form of an endpoint (never its secrets).
func Endpoint(e *postgres.WebhookEndpoint) *model.WebhookEndpoint {
	m := &model.WebhookEndpoint{ID: e.ID, URL: e.URL, Description: e.Description, Enabled: e.Enabled,
		DisabledReason: e.DisabledReason, FailingSince: e.FailingSince, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
		EventTypes: append([]order.EventType{}, e.EventTypes...)}
	if e.PreviousSecret != nil && e.PreviousExpiresAt != nil && time.Now().Before(*e.PreviousExpiresAt) {
		m.PreviousSecretExpiresAt = e.PreviousExpiresAt
	}
	return m
}

// Delivery is the GraphQL form of a delivery.
func Delivery(d *postgres.WebhookDelivery) *model.WebhookDelivery {
	m := &model.WebhookDelivery{ID: strconv.FormatInt(d.ID, 10), EndpointID: d.EndpointID, WebhookID: d.EventID,
		EventType: d.EventType, OrderID: d.OrderID, Status: statusOf(d.State), Attempts: d.Attempts,
		LastResponseCode: d.LastStatus, LastError: d.LastError, NextAttemptAt: d.NextAttemptAt, CreatedAt: d.CreatedAt,
		DeliveredAt: d.DeliveredAt, AttemptLog: make([]*model.WebhookAttempt, len(d.Log))}
	for i, a := range d.Log {
		m.AttemptLog[i] = &model.WebhookAttempt{Number: a.Attempt, At: a.At, ResponseCode: a.Status, Error: a.Error,
			DurationMs: int(a.Duration.Milliseconds())}
	}
	return m
}

package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
)

// Defaults of [Config].
const (
	DefaultTTL    = 24 * time.Hour
	DefaultLeeway = 30 * time.Second
)

// MinSecretLength is the shortest HS256 secret accepted: 32 bytes, the
// size of the hash (RFC 7518, section 3.2). A shorter secret can be found
// by brute force from any one token, which then forges sessions.
const MinSecretLength = 32

// Config configures an [Issuer] and a [Verifier].
type Config struct {
	// Secrets are the HS256 keys. The first signs new tokens; all of them
	// verify, so a secret can be rotated by putting the new one first and
	// dropping the old one once its tokens have expired. At least one,
	// each at least MinSecretLength bytes.
	Secrets [][]byte
	// TTL is the lifetime of an issued token (default 24h).
	TTL time.Duration
	// Leeway is the clock skew tolerated when checking exp and nbf
	// (default 30s).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Issuer, when set, is the iss of issued tokens and required in
	// verified ones (JWT_ISSUER).
	Issuer string
	// Audience, when set, is the aud of issued tokens and required in
	// verified ones (JWT_AUDIENCE).
	Audience string
	// MaxLifetime is the longest lifetime (exp - iat) a verified token may
	// have (default config.DefaultJWTMaxLifetime); a token without iat, or issued in the future,
	// is refused.
	MaxLifetime time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Secrets) == 0 {
		return c, errors.New("auth: no JWT secret configured")
	}
	for i, s := range c.Secrets {
		if len(s) < MinSecretLength {
			return c, fmt.Errorf("auth: JWT secret %d (JWT_SECRET) has %d bytes; HS256 needs at least %d", i+1, len(s), MinSecretLength)
		}
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Leeway <= 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = config.DefaultJWTMaxLifetime
	}
	if c.TTL > c.MaxLifetime {
		return c, fmt.Errorf("auth: token TTL %s is longer than the maximum lifetime %s", c.TTL, c.MaxLifetime)
	}
	return c, nil
}

// Claims are the claims of a session token: sub is the user id.
type Claims struct {
	Role  order.Role `json:"role"`
	Email string     `json:"email,omitempty"`
	Name  string     `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// Issuer signs session tokens with the first configured secret.
type Issuer struct {
	cfg Config
}

// NewIssuer returns an Issuer, or an error when no usable secret is set.
func NewIssuer(cfg Config) (*Issuer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Issuer{cfg: cfg}, nil
}

// TTL is the lifetime of the tokens the Issuer signs.
func (i *Issuer) TTL() time.Duration { return i.cfg.TTL }

// Issue returns a signed token for u and the time it expires.
func (i *Issuer) Issue(u *order.User) (string, time.Time, error) {
	now := i.cfg.Now()
	exp := now.Add(i.cfg.TTL)
	claims := Claims{
		Role:  u.Role,
		Email: u.Email,
		Name:  u.Name,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   u.ID,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			Issuer:    i.cfg.Issuer,
		},
	}
	if i.cfg.Audience != "" {
		claims.Audience = jwt.ClaimStrings{i.cfg.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.cfg.Secrets[0])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return s, exp, nil
}

// Verifier checks session tokens: HS256 only (alg none and every other
// algorithm are refused), signed by any configured secret, exp and iat
// required, exp, nbf and iat (not in the future) checked with the leeway,
// a lifetime of at most MaxLifetime, iss and aud when configured, sub and
// a known role present.
type Verifier struct {
	parser      *jwt.Parser
	keys        jwt.VerificationKeySet
	now         func() time.Time
	maxLifetime time.Duration
	// verified remembers tokens that passed, for at most verifiedTTL and
	// never past their exp, so a browser's or app's repeated token is
	// parsed and its HMAC checked once a minute rather than per request.
	verified *lru.Cache[string, verifiedToken]
}

// verifiedTTL bounds how long a verified token is remembered; a secret
// dropped from the configuration stops verifying within it.
const verifiedTTL = time.Minute

type verifiedToken struct {
	claims Claims
	until  time.Time
}

// NewVerifier returns a Verifier, or an error when no usable secret is set.
func NewVerifier(cfg Config) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{parser: jwt.NewParser(opts...), maxLifetime: cfg.MaxLifetime}
	for _, s := range cfg.Secrets {
		v.keys.Keys = append(v.keys.Keys, s)
	}
	v.now = cfg.Now
	v.verified, _ = lru.New[string, verifiedToken](10000) // size > 0: cannot fail
	return v, nil
}

// Verify returns the claims of a valid token, or an UNAUTHENTICATED
// *order.Error whose Cause says what was wrong.
func (v *Verifier) Verify(token string) (*Claims, error) {
	now := v.now()
	if hit, ok := v.verified.Get(token); ok && now.Before(hit.until) {
		c := hit.claims
		return &c, nil
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.keys, nil })
	if err != nil {
		msg := "invalid session token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			msg = "session token expired"
		}
		return nil, unauthenticated(msg, err)
	}
	if claims.Subject == "" {
		return nil, unauthenticated("invalid session token", errors.New("token has no sub"))
	}
	if claims.IssuedAt == nil {
		return nil, unauthenticated("invalid session token", errors.New("token has no iat"))
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > v.maxLifetime {
		return nil, unauthenticated("invalid session token", fmt.Errorf("token lifetime %s exceeds %s", life, v.maxLifetime))
	}
	if claims.Role != order.RoleCustomer && claims.Role != order.RoleStaff {
		return nil, unauthenticated("invalid session token", fmt.Errorf("token has unknown role %q", claims.Role))
	}
	until := now.Add(verifiedTTL)
	if exp := claims.ExpiresAt.Time; exp.Before(until) {
		until = exp
	}
	v.verified.Add(token, verifiedToken{claims: claims, until: until})
	return &claims, nil
}

func unauthenticated(msg string, cause error) *order.Error {
	return &order.Error{Code: order.CodeUnauthenticated, Message: msg, Cause: cause}
}

package auth

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// EmailLookup finds a user by e-mail address; an unknown address is an
// *order.Error with code NOT_FOUND.
type EmailLookup interface {
	UserByEmail(ctx context.Context, email string) (*order.User, error)
}

// CookieConfig configures the session cookie set by [SessionHandler].
type CookieConfig struct {
	// Name of the cookie (default "bff_session").
	Name string
	// Secure marks the cookie Secure (with TLS or COOKIE_SECURE=true). A
	// secure request (httpx.IsSecure: TLS, or X-Forwarded-Proto: https from
	// a trusted proxy) gets a Secure cookie regardless.
	Secure bool
}

// SessionUser is the user in a sign-in response.
type SessionUser struct {
	ID    string     `json:"id"`
	Name  string     `json:"name"`
	Email string     `json:"email"`
	Role  order.Role `json:"role"`
}

// SessionResponse is the body of a successful sign-in.
type SessionResponse struct {
	User      SessionUser `json:"user"`
	Token     string      `json:"token"`
	ExpiresAt time.Time   `json:"expiresAt"`
}

// maxSessionBody caps the sign-in body.
const maxSessionBody = 4 << 10

// SessionHandler is the development sign-in for the demo users (mount it at
// /session only when enabled by configuration):
//
//   - POST with a JSON body {"email": "..."} looks the user up and answers
//     200 with [SessionResponse], setting the session cookie (HttpOnly,
//     SameSite=Lax, Path=/, Secure when configured, expiring with the
//     token); an unknown e-mail is 404 NOT_FOUND, a body that is not JSON
//     (or not sent as application/json) is 400 BAD_REQUEST, a missing
//     e-mail 400 BAD_USER_INPUT;
//   - DELETE clears the cookie and answers 204;
//   - other methods get 405.
func SessionHandler(issuer *Issuer, users EmailLookup, cookie CookieConfig) http.Handler {
	if cookie.Name == "" {
		cookie.Name = DefaultCookieName
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			signIn(w, r, issuer, users, cookie)
		case http.MethodDelete:
			http.SetCookie(w, clearCookie(cookie.Name, cookie.Secure || httpx.IsSecure(r)))
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "POST, DELETE")
			httpx.WriteError(w, r, http.StatusMethodNotAllowed,
				order.Errorf(httpx.CodeBadRequest, "use POST to sign in or DELETE to sign out"))
		}
	})
}

func signIn(w http.ResponseWriter, r *http.Request, issuer *Issuer, users EmailLookup, cookie CookieConfig) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != httpx.ContentTypeJSON {
		httpx.WriteError(w, r, http.StatusBadRequest,
			order.Errorf(httpx.CodeBadRequest, "send a JSON body with Content-Type: application/json"))
		return
	}
	var in struct {
		Email string `json:"email"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSessionBody)).Decode(&in); err != nil {
		if e := httpx.PayloadTooLargeError(err); e != nil {
			httpx.WriteError(w, r, http.StatusRequestEntityTooLarge, e)
			return
		}
		httpx.WriteError(w, r, http.StatusBadRequest, order.Errorf(httpx.CodeBadRequest, "body is not valid JSON"))
		return
	}
	email := strings.ToLower(strings.TrimSpace(in.Email))
	if email == "" {
		httpx.WriteError(w, r, http.StatusBadRequest, order.BadInput("email", order.ConstraintRequired, "email is required"))
		return
	}
	u, err := users.UserByEmail(r.Context(), email)
	if err != nil {
		e := order.AsError(err)
		status := httpx.Status(e.Code)
		if e.Code == order.CodeNotFound {
			e, status = order.NotFound("user"), http.StatusNotFound
		}
		if status < 400 {
			status = http.StatusInternalServerError
		}
		httpx.WriteError(w, r, status, e)
		return
	}
	token, exp, err := issuer.Issue(u)
	if err != nil {
		httpx.WriteError(w, r, http.StatusInternalServerError, order.AsError(err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookie.Name,
		Value:    token,
		Path:     "/",
		Expires:  exp,
		MaxAge:   int(issuer.TTL().Seconds()),
		HttpOnly: true,
		Secure:   cookie.Secure || httpx.IsSecure(r),
		SameSite: http.SameSiteLaxMode,
	})
	httpx.Info(r.Context()).SetUser(u.ID)
	w.Header().Set("Content-Type", httpx.ContentTypeJSON)
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(SessionResponse{
		User:      SessionUser{ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role},
		Token:     token,
		ExpiresAt: exp.UTC(),
	})
}

// clearCookie is a cookie that makes the browser drop the session cookie.
func clearCookie(name string, secure bool) *http.Cookie {
	return &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
}

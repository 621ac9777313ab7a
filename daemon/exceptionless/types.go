package exceptionless

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// User is the current user (GET /api/v2/users/me).
type User struct {
	ID                     string   `json:"id"`
	EmailAddress           string   `json:"email_address"`
	FullName               string   `json:"full_name"`
	OrganizationIDs        []string `json:"organization_ids"`
	Roles                  []string `json:"roles"`
	IsActive               bool     `json:"is_active"`
	IsEmailAddressVerified bool     `json:"is_email_address_verified"`
	HasLocalAccount        bool     `json:"has_local_account"`
}

// Organization is one organization the user belongs to.
type Organization struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	IsSuspended bool   `json:"is_suspended"`
}

// Project is one project. Names are unique only within an organization, so
// identify a project by ID, or by (OrganizationName, Name).
type Project struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	OrganizationID   string `json:"organization_id"`
	OrganizationName string `json:"organization_name"`
}

// NewToken describes a project token to create. Empty Scopes means
// ["client"]. The server does not check ExpiresUTC: a time in the past
// makes a token that is dead on arrival.
type NewToken struct {
	Scopes     []string
	Notes      string
	ExpiresUTC *time.Time // nil: never expires
}

// MarshalJSON encodes t as the server's NewToken, leaving out empty fields.
func (t NewToken) MarshalJSON() ([]byte, error) {
	w := struct {
		Scopes     []string `json:"scopes,omitempty"`
		Notes      string   `json:"notes,omitempty"`
		ExpiresUTC string   `json:"expires_utc,omitempty"`
	}{Scopes: t.Scopes, Notes: t.Notes}
	if t.ExpiresUTC != nil {
		w.ExpiresUTC = t.ExpiresUTC.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(w)
}

// ViewToken is an access token (API key) as the server shows it. ID is the
// secret itself.
type ViewToken struct {
	ID               Token
	OrganizationID   string
	ProjectID        string // empty for an organization-level token
	UserID           string
	DefaultProjectID string
	Scopes           []string // implied scopes included: ["user"] reads ["client","user"]
	ExpiresUTC       *time.Time
	Notes            string
	IsDisabled       bool
	IsSuspended      bool
	CreatedUTC       time.Time
	UpdatedUTC       time.Time
}

// Usable reports whether the server would accept the token at now: not
// disabled, not suspended and not expired.
func (t ViewToken) Usable(now time.Time) bool {
	return !t.IsDisabled && !t.IsSuspended && (t.ExpiresUTC == nil || !t.ExpiresUTC.Before(now))
}

// UnmarshalJSON decodes the server's ViewToken, accepting both date forms.
func (t *ViewToken) UnmarshalJSON(b []byte) error {
	var w struct {
		ID               Token    `json:"id"`
		OrganizationID   string   `json:"organization_id"`
		ProjectID        string   `json:"project_id"`
		UserID           string   `json:"user_id"`
		DefaultProjectID string   `json:"default_project_id"`
		Scopes           []string `json:"scopes"`
		ExpiresUTC       apiTime  `json:"expires_utc"`
		Notes            string   `json:"notes"`
		IsDisabled       bool     `json:"is_disabled"`
		IsSuspended      bool     `json:"is_suspended"`
		CreatedUTC       apiTime  `json:"created_utc"`
		UpdatedUTC       apiTime  `json:"updated_utc"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*t = ViewToken{
		ID:               w.ID,
		OrganizationID:   w.OrganizationID,
		ProjectID:        w.ProjectID,
		UserID:           w.UserID,
		DefaultProjectID: w.DefaultProjectID,
		Scopes:           w.Scopes,
		Notes:            w.Notes,
		IsDisabled:       w.IsDisabled,
		IsSuspended:      w.IsSuspended,
		CreatedUTC:       time.Time(w.CreatedUTC),
		UpdatedUTC:       time.Time(w.UpdatedUTC),
	}
	if e := time.Time(w.ExpiresUTC); !e.IsZero() {
		t.ExpiresUTC = &e
	}
	return nil
}

// ClientConfig is a project's client configuration (GET
// /api/v2/projects/config). Version grows with every settings change.
type ClientConfig struct {
	Version  int               `json:"version"`
	Settings map[string]string `json:"settings"`
}

// apiTime accepts both date forms the server sends: RFC 3339 with a zone,
// and a stored value without zone and with 7 fractional digits
// ("2016-01-11T20:05:59.7185672"), which is UTC.
type apiTime time.Time

func (t *apiTime) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = apiTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	*t = apiTime(v)
	return nil
}

// ParseTime parses a date as the server writes it, with or without a zone.
// A value without a zone is UTC.
func ParseTime(s string) (time.Time, error) {
	if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return v.UTC(), nil
	}
	// Parsing accepts any fractional seconds even when the layout has none.
	if v, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC); err == nil {
		return v, nil
	}
	return time.Time{}, errors.New("exceptionless: unrecognised date format")
}

package api

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gin-gonic/gin"
)

// keyLocations caches, for one request, the location of each encounter
// (locationOf), so that a page of a unit's messages opens each of its
// encounters once.
const keyLocations = "carebridge.locations"

// locationOf is where the patient of an encounter is, for a unit clerk's
// view of a message: the issue's "a clerk sees that a message exists and
// its priority and location", without its clinical content. It is the
// encounter's active location (else its last), as the JSON array of one
// reference with the Location's name for display
// ([{"reference":"Location/…","display":"4 WEST 401 A"}]), which the
// clerk's view carries as Communication.about; nil when the encounter or
// its location is not stored.
func (s *Server) locationOf(c *gin.Context, encounter string) (json.RawMessage, error) {
	cache, _ := c.Get(keyLocations)
	seen, _ := cache.(map[string]json.RawMessage)
	if seen == nil {
		seen = map[string]json.RawMessage{}
		c.Set(keyLocations, seen)
	}
	if where, ok := seen[encounter]; ok {
		return where, nil
	}
	where, err := s.findLocation(c, encounter)
	if err != nil {
		return nil, err
	}
	seen[encounter] = where
	return where, nil
}

func (s *Server) findLocation(c *gin.Context, encounter string) (json.RawMessage, error) {
	var enc struct {
		Location []struct {
			Location struct {
				Reference string `json:"reference"`
			} `json:"location"`
			Status string `json:"status"`
		} `json:"location"`
	}
	if ok, err := s.openMapped(c, encounter, &enc); !ok || err != nil {
		return nil, err
	}
	ref := ""
	for _, l := range enc.Location {
		if strings.HasPrefix(l.Location.Reference, "Location/") && (ref == "" || l.Status == "active") {
			ref = l.Location.Reference
		}
	}
	if ref == "" {
		return nil, nil
	}
	var loc struct {
		Name string `json:"name"`
	}
	if ok, err := s.openMapped(c, ref, &loc); !ok || err != nil {
		return nil, err
	}
	b, err := json.Marshal([]map[string]string{{"reference": ref, "display": loc.Name}})
	if err != nil {
		return nil, err
	}
	if loc.Name == "" {
		b, _ = json.Marshal([]map[string]string{{"reference": ref}})
	}
	return b, nil
}

// openMapped reads the stored resource ref ("Type/id") into v; false when
// it is not stored.
func (s *Server) openMapped(c *gin.Context, ref string, v any) (bool, error) {
	typ, id, _ := strings.Cut(ref, "/")
	if !validID(id) {
		return false, nil
	}
	res, err := s.cfg.Store.GetResource(c.Request.Context(), typ, id)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", ref, err)
	}
	body, err := s.cfg.Keys.Open(res.Sealed, []byte(ref))
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", ref, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("reading %s: %w", ref, err)
	}
	return true, nil
}

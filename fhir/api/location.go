package api

import (
	"encoding/json"
	"fmt"
	"slices"
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
	seen, _ := cache.(map[string]shownLocation)
	if seen == nil {
		seen = map[string]shownLocation{}
		c.Set(keyLocations, seen)
	}
	if where, ok := seen[encounter]; ok {
		return where.about, nil
	}
	ref, about, err := s.findLocation(c, encounter)
	if err != nil {
		return nil, err
	}
	seen[encounter] = shownLocation{ref, about}
	return about, nil
}

// shownLocation is a Location a request showed, and how.
type shownLocation struct {
	ref   string
	about json.RawMessage
}

// locationsShown are the Locations locationOf showed in this request, for
// its audit entry.
func locationsShown(c *gin.Context) []string {
	cache, _ := c.Get(keyLocations)
	seen, _ := cache.(map[string]shownLocation)
	var refs []string
	for _, l := range seen {
		if l.ref != "" && !slices.Contains(refs, l.ref) {
			refs = append(refs, l.ref)
		}
	}
	slices.Sort(refs)
	return refs
}

func (s *Server) findLocation(c *gin.Context, encounter string) (ref string, about json.RawMessage, err error) {
	var enc struct {
		Location []struct {
			Location struct {
				Reference string `json:"reference"`
			} `json:"location"`
			Status string `json:"status"`
		} `json:"location"`
	}
	if ok, err := s.openMapped(c, encounter, &enc); !ok || err != nil {
		return "", nil, err
	}
	var active string
	for _, l := range enc.Location {
		if strings.HasPrefix(l.Location.Reference, "Location/") {
			ref = l.Location.Reference
			if l.Status == "active" {
				active = ref
			}
		}
	}
	if active != "" {
		ref = active
	}
	if ref == "" {
		return "", nil, nil
	}
	var loc struct {
		Name string `json:"name"`
	}
	if ok, err := s.openMapped(c, ref, &loc); !ok || err != nil {
		return "", nil, err
	}
	shown := map[string]string{"reference": ref}
	if loc.Name != "" {
		shown["display"] = loc.Name
	}
	about, err = json.Marshal([]map[string]string{shown})
	return ref, about, err
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

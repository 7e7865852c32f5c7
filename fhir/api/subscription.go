package api

import "github.com/gin-gonic/gin"

// subscriptionRoutes serves Subscription.
func (s *Server) subscriptionRoutes(f *gin.RouterGroup) {}

// subscriptionCapabilities are the CapabilityStatement entries of
// Subscription.
func (s *Server) subscriptionCapabilities() []map[string]any { return nil }

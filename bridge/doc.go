// Package bridge runs carebridge's Watermill pipelines: topics, router, middleware and handlers, and the queue transports they run on.
package bridge

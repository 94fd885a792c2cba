// Package shop is the application layer between the GraphQL resolvers and
// the infrastructure: it assembles the screens (through the screen cache
// and one batch of reads per screen, internal/loaders), validates and runs the mutations, and hands committed
// events to whoever must hear of them.
//
// Its results are the GraphQL models of graph/model, fully assembled, so
// that a screen can be cached whole and served without another query.
package shop

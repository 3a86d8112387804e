module github.com/musterhq/muster/journal/redisjournal

go 1.26.0

// Inside this repository the library is the working tree; a user of this
// module gets the version required below (replace directives of a
// dependency are ignored), so that version must have every API this module
// uses (TestInstallableOutsideRepo checks it): ratelimit/redisrate's
// README.md, "Releases", says how the modules are tagged.
replace github.com/musterhq/muster => ../..

require (
	github.com/musterhq/muster v0.0.0-20261206221626-985d895148a3
	github.com/redis/go-redis/v9 v9.23.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

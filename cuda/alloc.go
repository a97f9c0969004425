package cuda

import (
	"errors"
	"fmt"
	"slices"
)

// Size classes of the caching allocator: a request is rounded up to a multiple of
// smallGrain bytes up to largeFrom, and to a multiple of largeGrain above it. Freed
// blocks wait in a free list per class and serve later requests of the same class, so
// a loop that repeats the same shapes (a diffusion run) stops calling the driver
// after its first iteration. Blocks are never split or merged.
const (
	smallGrain = 512
	largeFrom  = 1 << 20
	largeGrain = 2 << 20
)

// roundSize returns the size class of a request of n bytes (at least smallGrain).
func roundSize(n uint64) uint64 {
	if n <= largeFrom {
		return max(smallGrain, (n+smallGrain-1)/smallGrain*smallGrain)
	}
	return (n + largeGrain - 1) / largeGrain * largeGrain
}

// Stats counts a device's memory, in bytes.
type Stats struct {
	DriverAllocs int64 // blocks ever allocated from the driver (cuMemAlloc)
	DriverFrees  int64 // blocks ever given back to the driver (cuMemFree)
	DriverBytes  int64 // held from the driver now: LiveBytes + CachedBytes
	CachedBytes  int64 // in free blocks waiting for reuse
	LiveBytes    int64 // in blocks handed out by Alloc and not yet freed
	Reuses       int64 // requests served from the cache
}

// allocator is the caching allocator. It is not safe for concurrent use: the Device
// calls it under its mutex. Its driver calls are fields so that tests can fake them.
type allocator struct {
	malloc func(bytes uint64) (uint64, error) // from the driver; errors.Is(err, errOutOfMemory) when full
	free   func(addr uint64) error            // to the driver
	idle   func() error                       // waits until no queued work uses memory (before free)
	round  func(bytes uint64) uint64          // the size class of a request: roundSize

	live  map[uint64]uint64   // address -> size class of blocks handed out
	cache map[uint64][]uint64 // size class -> free blocks
	stats Stats
	// refused says the last request was refused for want of memory without
	// trimming the cache: the caller collects garbage (refilling the cache) and
	// asks again, and only a second refusal in a row gives the cache back.
	refused bool
}

func newAllocator(malloc func(uint64) (uint64, error), free func(uint64) error, idle func() error) *allocator {
	return &allocator{malloc: malloc, free: free, idle: idle, round: roundSize,
		live: map[uint64]uint64{}, cache: map[uint64][]uint64{}}
}

// alloc returns a block of at least n bytes: a cached one of its class, else a new
// one from the driver. When the driver is out of memory the first time, it
// returns the error, so that the caller can collect dead tensors into the cache
// and ask again; when it is out of memory on that second request too, it gives
// every cached block back to the driver and tries once more.
func (a *allocator) alloc(n uint64) (uint64, error) {
	size := a.round(n)
	if l := a.cache[size]; len(l) > 0 {
		p := l[len(l)-1]
		a.cache[size] = l[:len(l)-1]
		a.stats.CachedBytes -= int64(size)
		a.stats.LiveBytes += int64(size)
		a.stats.Reuses++
		a.live[p] = size
		return p, nil
	}
	p, err := a.malloc(size)
	if err != nil && errors.Is(err, errOutOfMemory) && a.stats.CachedBytes > 0 {
		if !a.refused {
			a.refused = true
			return 0, err
		}
		if terr := a.trim(); terr != nil {
			return 0, terr
		}
		p, err = a.malloc(size)
	}
	if err != nil {
		return 0, err
	}
	a.refused = false
	a.stats.DriverAllocs++
	a.stats.DriverBytes += int64(size)
	a.stats.LiveBytes += int64(size)
	a.live[p] = size
	return p, nil
}

// release puts a block made by alloc back into the cache.
func (a *allocator) release(p uint64) error {
	size, ok := a.live[p]
	if !ok {
		return fmt.Errorf("cuda: free of %#x, which is not a live allocation", p)
	}
	delete(a.live, p)
	a.cache[size] = append(a.cache[size], p)
	a.stats.LiveBytes -= int64(size)
	a.stats.CachedBytes += int64(size)
	return nil
}

// trim gives every cached block back to the driver, after the queued work is done
// (it may still use them).
func (a *allocator) trim() error {
	if a.stats.CachedBytes == 0 {
		return nil
	}
	if err := a.idle(); err != nil {
		return err
	}
	sizes := make([]uint64, 0, len(a.cache))
	for s := range a.cache {
		sizes = append(sizes, s)
	}
	slices.Sort(sizes)
	for _, s := range sizes {
		l := a.cache[s]
		for len(l) > 0 {
			p := l[len(l)-1]
			if err := a.free(p); err != nil {
				a.cache[s] = l
				return err
			}
			l = l[:len(l)-1]
			a.stats.DriverFrees++
			a.stats.DriverBytes -= int64(s)
			a.stats.CachedBytes -= int64(s)
		}
		delete(a.cache, s)
	}
	return nil
}

// freeAll gives every block, live or cached, back to the driver (Close).
func (a *allocator) freeAll() error {
	for p := range a.live {
		if err := a.release(p); err != nil {
			return err
		}
	}
	return a.trim()
}

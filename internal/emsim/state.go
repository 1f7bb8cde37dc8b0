package emsim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// stateFile is the persisted form of the keepAlive pull configurations of
// every member, keyed by member address (EMS's pushPullSetup.xml).
type stateFile struct {
	Version int                        `json:"version"`
	Members map[string]json.RawMessage `json:"members"`
}

type memberState struct {
	Pull []*settings `json:"pull"`
}

// stateStore writes the state file after every change, coalescing bursts:
// a writer goroutine rewrites the whole file (temporary file and rename)
// whenever it is marked dirty, and Close writes it a last time.
type stateStore struct {
	c    *Cluster
	path string

	dirty   chan struct{}
	gen     atomic.Uint64 // changes made
	written atomic.Uint64 // changes covered by the last write

	mu    sync.Mutex // serializes writes
	other map[string]json.RawMessage
}

func newStateStore(c *Cluster, path string) *stateStore {
	return &stateStore{c: c, path: path, dirty: make(chan struct{}, 1), other: map[string]json.RawMessage{}}
}

// load restores the configurations of c's members; entries of other
// addresses are kept and written back unchanged.
func (s *stateStore) load() error {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("read state %s: %w", s.path, err)
	}
	now := time.Now()
	restored := 0
	for ip, raw := range f.Members {
		m := s.c.byIP[ip]
		if m == nil {
			s.other[ip] = raw
			continue
		}
		var ms memberState
		if err := json.Unmarshal(raw, &ms); err != nil {
			return fmt.Errorf("read state %s: member %s: %w", s.path, ip, err)
		}
		m.mu.Lock()
		for _, set := range ms.Pull {
			if set == nil || set.ConfigID == 0 || !set.persistent() {
				continue
			}
			u, ok := parseURI(set.URI)
			if !ok || m.configs[set.ConfigID] != nil || m.configByName[set.LocalStreamName] != nil {
				continue
			}
			m.addConfigLocked(set, u, now)
			restored++
		}
		m.mu.Unlock()
	}
	s.c.log.Info("state restored", "configs", restored)
	return nil
}

func (s *stateStore) markDirty() {
	s.gen.Add(1)
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// run writes the state whenever it is dirty, until ctx is done.
func (s *stateStore) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
			if err := s.flush(); err != nil {
				s.c.log.Error("state not written", "err", err)
			}
		}
	}
}

// flush writes the state file if it changed since the last write.
func (s *stateStore) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.gen.Load()
	if gen == s.written.Load() {
		return nil
	}
	f := stateFile{Version: 1, Members: make(map[string]json.RawMessage, len(s.other)+len(s.c.members))}
	for ip, raw := range s.other {
		f.Members[ip] = raw
	}
	for _, m := range s.c.members {
		ms := memberState{Pull: m.persistentSettings()}
		raw, err := json.Marshal(ms)
		if err != nil {
			return fmt.Errorf("write state: %w", err)
		}
		f.Members[m.ip] = raw
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	s.written.Store(gen)
	return nil
}

// persistentSettings returns the settings of m's persistent configurations
// by configId.
func (m *Member) persistentSettings() []*settings {
	m.mu.Lock()
	out := make([]*settings, 0, len(m.configs))
	for _, c := range m.configs {
		if c.set.persistent() {
			out = append(out, c.set)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b *settings) int { return cmp.Compare(a.ConfigID, b.ConfigID) })
	return out
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	name := tmp.Name()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		_ = os.Remove(name)
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		_ = os.Remove(name)
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		_ = os.Remove(name)
		return err
	}
	return nil
}

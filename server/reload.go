package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/logging"
)

// Reloading.
//
// A reload loads the configuration anew (Options.Load: the flags and
// environment of the start, the config file read again), builds a new
// generation exactly as New does, and swaps it in atomically. Checks already
// running finish on the generation they started on; new checks take the new
// one. A configuration that does not load or build is refused: one Error
// line with the loader's message (file:line: field), and the previous
// generation keeps serving.
//
// Key caches whose settings are unchanged are carried over, loaded and
// refreshing. New ones are started before the swap and, when the server is
// ready, must load their first key set before the swap happens: a reload
// never takes a ready server out of readiness (a provider whose JWKS cannot
// be fetched is refused like a bad file). Caches no longer used are stopped
// once the checks still running on the old generation have finished.
//
// The file is watched by polling its metadata every ConfigWatchInterval, not
// with inotify: Kubernetes updates a mounted ConfigMap by swapping a symlink
// of the directory, which a watch on the file misses (it keeps watching the
// old inode) and a watch on the directory sees as a burst of events that
// must be filtered anyway. A stat per interval sees every kind of
// replacement (symlink swap, an editor's rename, an in-place write) the same
// way, on every platform and on network filesystems, and costs nothing.

// fileStamp identifies a version of the config file.
type fileStamp struct {
	info os.FileInfo // nil when the file cannot be read
	sum  [sha256.Size]byte
}

// stampFile returns the stamp of file. It reads and hashes the content only
// when the metadata differs from prev's, so an unchanged file costs a stat.
func stampFile(file string, prev fileStamp) fileStamp {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}
	}
	if prev.info != nil && os.SameFile(fi, prev.info) && fi.ModTime().Equal(prev.info.ModTime()) && fi.Size() == prev.info.Size() {
		return fileStamp{info: fi, sum: prev.sum}
	}
	f, err := os.Open(file)
	if err != nil {
		return fileStamp{}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, config.MaxFileBytes+1)); err != nil {
		return fileStamp{}
	}
	st := fileStamp{info: fi}
	h.Sum(st.sum[:0])
	return st
}

// changed reports whether the content differs from prev's (a file that went
// missing or unreadable counts as changed, so that its return is noticed).
func (st fileStamp) changed(prev fileStamp) bool {
	return (st.info == nil) != (prev.info == nil) || !bytes.Equal(st.sum[:], prev.sum[:])
}

// watch triggers reloads until ctx ends: on every receive from
// Options.Reload, and when the config file's content changes.
func (s *Server) watch(ctx, cacheCtx context.Context, runner *cacheRunner) {
	file, every := s.cfg.File, s.cfg.ConfigWatchInterval
	var tick <-chan time.Time
	var last fileStamp
	if file != "" && every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
		last = stampFile(file, fileStamp{})
	}
	signals := s.opts.Reload
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			if file != "" {
				last = stampFile(file, last)
			}
			s.reload(ctx, cacheCtx, runner, "signal")
		case <-tick:
			st := stampFile(file, last)
			if !st.changed(last) {
				last = st
				continue
			}
			last = st
			if st.info == nil {
				// Mid-swap or deleted: keep serving, and reload when it is back.
				s.log.LogAttrs(ctx, slog.LevelWarn, "config file unreadable; keeping the configuration in force", slog.String("file", file))
				continue
			}
			s.reload(ctx, cacheCtx, runner, "file")
		}
	}
}

// reload loads, validates and swaps in a new generation, or refuses it.
func (s *Server) reload(ctx, cacheCtx context.Context, runner *cacheRunner, trigger string) {
	started := time.Now()
	cfg, err := s.opts.Load()
	if err != nil {
		s.refuse(ctx, trigger, err)
		return
	}
	cfg = withDefaults(cfg)
	old := s.gen.Load()
	g, fresh, err := s.build(cfg, old)
	if err != nil {
		if cfg.File != "" {
			// authz's checks know no file; say which one at least.
			err = fmt.Errorf("%s: %w", cfg.File, err)
		}
		s.refuse(ctx, trigger, err)
		return
	}
	for _, c := range fresh {
		runner.start(cacheCtx, c)
	}
	if old.ready() {
		if err := warm(ctx, fresh, cfg.JWKSFetchTimeout+time.Second); err != nil {
			runner.halt(fresh)
			s.refuse(ctx, trigger, err)
			return
		}
	}

	s.statsMu.Lock()
	s.retiring = append(s.retiring, old)
	s.gen.Store(g)
	s.statsMu.Unlock()
	if s.opts.LogLevel != nil {
		level, _ := logging.Level(cfg.LogLevel) // validated by config.Load
		s.opts.LogLevel.Set(level)
	}
	s.updateHealth()
	s.metrics.reloaded(s.opts.Now(), false)

	var removed []*jwks.Cache
	for _, c := range old.caches {
		if !slices.Contains(g.caches, c) {
			removed = append(removed, c)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "config reloaded",
		slog.String("trigger", trigger), slog.String("file", cfg.File),
		slog.Int("providers", len(cfg.Providers)), slog.Int("rules", len(cfg.Rules)),
		slog.Int("key_sets_kept", len(g.caches)-len(fresh)), slog.Int("key_sets_new", len(fresh)),
		slog.Int("key_sets_removed", len(removed)), slog.Duration("duration", time.Since(started)))
	if diff := config.NeedsRestart(s.cfg, cfg, s.opts.LogLevel != nil); len(diff) > 0 {
		s.log.LogAttrs(ctx, slog.LevelWarn, "config reload: these settings changed but need a restart; they keep their values from the start",
			slog.Any("settings", diff))
	}
	if !drain(ctx, old, max(old.cfg.ShutdownGrace, time.Second)) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "config reload: checks still running on the previous configuration; stopping its key refreshes anyway")
	}
	runner.halt(removed)
	s.retire(old)
}

func (s *Server) refuse(ctx context.Context, trigger string, err error) {
	s.metrics.reloadFailed()
	s.log.LogAttrs(ctx, slog.LevelError, "config reload refused; the previous configuration keeps serving",
		slog.String("trigger", trigger), slog.String("error", err.Error()))
}

// warm waits until every cache has loaded a key set. It fails as soon as
// one's first fetch fails, or after wait.
func warm(ctx context.Context, caches []*jwks.Cache, wait time.Duration) error {
	if len(caches) == 0 {
		return nil
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, c := range caches {
			if c.Ready() {
				continue
			}
			ready = false
			if st := c.Status(); st.LastError != nil {
				return fmt.Errorf("provider %s: the key set of the new configuration does not load: %w", c.Name(), st.LastError)
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shutting down: %w", ctx.Err())
		case <-deadline.C:
			var names []string
			for _, c := range caches {
				if !c.Ready() {
					names = append(names, c.Name())
				}
			}
			return fmt.Errorf("the key sets of providers %v of the new configuration did not load within %v", names, wait)
		case <-tick.C:
		}
	}
}

// drain waits until no check runs on g, at most wait; it reports whether
// none does.
func drain(ctx context.Context, g *generation, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for g.inflight.Load() > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

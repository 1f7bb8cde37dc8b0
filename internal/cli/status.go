package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/controller"
)

func statusCmd(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "status")
	cfgPath := fs.String("config", "", "ask every member of this config `FILE` directly")
	server := fs.String("server", "", "ask a running daemon at this `URL` (e.g. http://127.0.0.1:4000)")
	asJSON := fs.Bool("json", false, "print the status JSON on stdout")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	if (*cfgPath == "") == (*server == "") {
		return fs.usageError("give exactly one of -config and -server")
	}
	var st controller.Status
	var err error
	if *cfgPath != "" {
		st, err = statusFromConfig(ctx, *cfgPath)
	} else {
		st, err = statusFromServer(ctx, *server)
	}
	if err != nil {
		stderrLines(env.Stderr, err)
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(env.Stderr, "streamlb status: %v\n", err)
			return exitError
		}
	} else {
		printStatus(env.Stdout, st)
	}
	if !st.Converged {
		return exitNotConverged
	}
	return exitOK
}

func newOneShot(path string) (*controller.Controller, *config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	specs, err := app.MemberSpecs(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctl, err := controller.New(controller.Options{
		Group: cfg.Group, AppName: cfg.AppName, KeepAlive: cfg.KeepAlive,
		ResyncInterval: cfg.ResyncInterval, TeardownGrace: cfg.TeardownGrace,
		Include: cfg.Include, Exclude: cfg.Exclude, MaxInflight: cfg.MaxInflight,
		MaxPullsPerSecond: cfg.MaxPullsPerSecond, Members: specs,
	})
	return ctl, cfg, err
}

func statusFromConfig(ctx context.Context, path string) (controller.Status, error) {
	ctl, _, err := newOneShot(path)
	if err != nil {
		return controller.Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return ctl.Survey(ctx), nil
}

func statusFromServer(ctx context.Context, server string) (controller.Status, error) {
	var st controller.Status
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return st, fmt.Errorf("-server %q: want a URL such as http://127.0.0.1:4000", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/status"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return st, err
	}
	if pw := u.User; pw != nil {
		p, _ := pw.Password()
		req.SetBasicAuth(pw.Username(), p)
		u.User = nil
		req.URL = u
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("ask %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return st, fmt.Errorf("read status from %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("ask %s: %s: %.200s", u.Redacted(), resp.Status, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decode status from %s: %w", u.Redacted(), err)
	}
	return st, nil
}

// printStatus prints members, then the streams × members matrix. Every
// string of st goes through printable: a stream name is whatever an encoder
// published, and a daemon asked with -server is another process.
func printStatus(w io.Writer, st controller.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tAPI\tSTATE\tLATENCY\tLAST ERROR")
	for _, m := range st.Members {
		state := printable(m.State)
		if m.Paused {
			state += " (paused)"
		}
		lastErr := ""
		if m.LastError != "" {
			lastErr = printable(m.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fms\t%s\n",
			printable(m.Name), printable(m.Address), printable(m.API), state, m.LatencyMS, lastErr)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "STREAM\tORIGIN")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "\t%s", printable(m.Name))
	}
	fmt.Fprintln(tw)
	for _, s := range st.Streams {
		fmt.Fprintf(tw, "%s\t%s", printable(s.Name), printable(s.Origin))
		for _, m := range st.Members {
			cell := "-"
			if m.Name == s.Origin {
				cell = "origin"
			} else if r, ok := s.Replicas[m.Name]; ok {
				cell = printable(r.State)
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "conflict: %s on %s: %s\n", printable(c.Stream), printable(c.Member), printable(c.Reason))
	}
	fmt.Fprintf(w, "\n%d streams, queue depth %d, converged: %v\n", len(st.Streams), st.QueueDepth, st.Converged)
}

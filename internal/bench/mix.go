package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// mixPath is where the recorded event mix lives in a clone of the
// repository.
const mixPath = "testdata/ems/recorded/ems-events-webuilogs.jsonl"

// Placeholders in a stream event template.
const (
	phIP   = "@@STREAMLB_BENCH_IP@@"
	phName = "@@STREAMLB_BENCH_NAME@@"
)

// mixEvent is one recorded event: its body as recorded, or for
// inStreamCreated and inStreamClosed a template whose stream name and
// addresses are filled in when it is sent.
type mixEvent struct {
	typ      string
	body     []byte // other events: sent as recorded
	template string // stream events
}

// stream reports whether the event is a stream event re-addressed to a
// member.
func (e mixEvent) stream() bool { return e.template != "" }

// render returns the body of a stream event about name on the member at ip.
func (e mixEvent) render(ip, name string) []byte {
	return []byte(strings.NewReplacer(phIP, ip, phName, name).Replace(e.template))
}

// findMix returns path when set, else the recorded mix found in the
// working directory, the executable's directory or one of their parents.
func findMix(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, mixPath)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("cannot find %s in the working directory or its parents: run bench from a clone of the repository, or give -events-file", mixPath)
}

// loadMix reads the recorded events, one JSON document a line, in order.
func loadMix(path string) ([]mixEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read event mix: %w", err)
	}
	defer f.Close()
	var out []mixEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		ev, err := parseMixEvent(raw)
		if err != nil {
			return nil, fmt.Errorf("read event mix %s:%d: %w", path, line, err)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read event mix: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read event mix %s: no events", path)
	}
	return out, nil
}

func parseMixEvent(raw []byte) (mixEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var env map[string]any
	if err := dec.Decode(&env); err != nil {
		return mixEvent{}, err
	}
	typ, _ := env["type"].(string)
	if typ == "" {
		return mixEvent{}, errors.New("event without type")
	}
	if typ != "inStreamCreated" && typ != "inStreamClosed" {
		return mixEvent{typ: typ, body: bytes.Clone(raw)}, nil
	}
	payload, ok := env["payload"].(map[string]any)
	if !ok {
		return mixEvent{}, errors.New("stream event without payload")
	}
	payload["ip"], payload["nearIp"], payload["name"] = phIP, phIP, phName
	if ps, ok := payload["pullSettings"].(map[string]any); ok {
		ps["localStreamName"] = phName
	}
	b, err := json.Marshal(env)
	if err != nil {
		return mixEvent{}, err
	}
	return mixEvent{typ: typ, template: string(b)}, nil
}

// Orders of the mix's events, for Options.MixOrder.
const (
	// MixShuffled posts the mix's events in an order shuffled once with a
	// fixed seed: the same events and shares in every run, with each type
	// spread over the whole run, as the events of many independent
	// streams arrive.
	MixShuffled = "shuffled"
	// MixRecorded posts them in the order recorded. The recording holds
	// most of its stream events in one stretch, so replayed at a fixed
	// rate they come as a burst once per pass over the mix.
	MixRecorded = "recorded"
)

// mixSeed is the seed of the shuffled order: a run's events are the same
// from one run to the next.
const mixSeed = 1

// orderMix puts the mix in the given order (MixShuffled or MixRecorded).
func orderMix(mix []mixEvent, order string) {
	if order == MixRecorded {
		return
	}
	rnd := rand.New(rand.NewPCG(mixSeed, mixSeed))
	rnd.Shuffle(len(mix), func(i, j int) { mix[i], mix[j] = mix[j], mix[i] })
}

// mixShares returns the share of each event type in the mix.
func mixShares(mix []mixEvent) map[string]float64 {
	out := map[string]float64{}
	for _, e := range mix {
		out[e.typ] += 1 / float64(len(mix))
	}
	return out
}

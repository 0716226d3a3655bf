package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/cluster/redistest"
)

// TestDashboardAndAlertQueriesReturnData starts a real Prometheus with
// deploy/prometheus/alerts.yml, scraping a real serve while `medcall bench`
// drives recorded, upgraded consultations through it and its built-in TURN
// relay; then every query of the Grafana dashboard and the signal of every
// alert rule (its expression without the threshold) must return series, and
// every rule must evaluate without error. A renamed metric or a wrong label
// breaks this test. The node runs in cluster mode on a real redis-server (a
// cluster of one: every join is placed through Redis), so the dashboard's
// cluster row is checked against what a cluster node exports.
func TestDashboardAndAlertQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Prometheus and a 10 s bench")
	}
	prom := needTool(t, "prometheus")
	data := t.TempDir()
	// The built-in TURN relay on loopback (it needs the one UDP media port),
	// and every bench participant relayed through it, so the TURN panels
	// show a real relay's traffic.
	// A cap the bench stays under: its refusal counter exists from the start.
	addr, admin, _ := startServe(t, data, "--udp-port", strconv.Itoa(freeUDPPort(t)), "--turn", "--turn-port", "0", "--turn-tls-port", "0",
		"--redis-url", redistest.Start(t).URL(), "--max-consultations", "100")

	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n  - job_name: medcall\n    static_configs: [{targets: [%q]}]\n", rules, admin)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	api := "http://" + promAddr
	deadline := time.Now().Add(30 * time.Second)
	for get200(api+"/-/ready") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var benchOut strings.Builder
	if err := runBench(ctx, []string{"--url", "ws://" + addr + "/v1/signal", "--admin", "http://" + admin, "--data", data,
		"--n", "2", "--relay", "--duration", "8s", "--upgrade-after", "2s", "--path", "mix", "--join-rate", "10/s",
		"--audio", "../../testdata/audio.ogg", "--video", "../../testdata/video.ivf", "--out", ""}, &benchOut, &benchOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, benchOut.String())
	}
	time.Sleep(3 * time.Second) // a few scrapes and rule evaluations after the bench

	// Grafana's own variables, as Grafana would set them for a short range.
	grafanaVars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "5m")
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []panel `json:"panels"` // a collapsed row's
	}
	var dash struct {
		Panels []panel `json:"panels"`
	}
	b, err := os.ReadFile("../../deploy/grafana/medcall.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	queries := 0
	var all []panel
	for i, p := range dash.Panels {
		if p.Type == "row" { // a heading: its panels follow it, or sit inside it when collapsed
			if len(p.Targets) != 0 || len(p.Panels) == 0 && (i+1 == len(dash.Panels) || dash.Panels[i+1].Type == "row") {
				t.Errorf("row %q: a row holds panels and no query of its own", p.Title)
			}
			all = append(all, p.Panels...)
			continue
		}
		all = append(all, p)
	}
	for _, p := range all {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if n := promSeries(t, api, grafanaVars.Replace(tg.Expr)); n == 0 {
				t.Errorf("panel %q: %s returns no series", p.Title, tg.Expr)
			}
		}
	}

	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Query, Health, LastError, Type string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	promGet(t, api+"/api/v1/rules", &rulesResp)
	threshold := regexp.MustCompile(`^(.*)\s(==|!=|>=|<=|>|<)\s(\S+)$`)
	nrules := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			nrules++
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
			m := threshold.FindStringSubmatch(r.Query)
			if m == nil {
				t.Errorf("rule %s: %q is not \"<signal> <comparison> <threshold>\"", r.Name, r.Query)
				continue
			}
			if n := promSeries(t, api, m[1]); n == 0 {
				t.Errorf("rule %s: signal %s returns no series", r.Name, m[1])
			}
		}
	}
	// The relay carried the bench's media (not just zeroed series), and the
	// bench's consultations were placed through Redis.
	for _, q := range []string{"medcall_turn_allocations_total > 0", `medcall_turn_relayed_bytes_total{direction="to_sfu"} > 0`, `medcall_turn_relayed_bytes_total{direction="to_client"} > 0`} {
		if promSeries(t, api, q) == 0 {
			t.Errorf("%s: the bench's relayed media did not reach the built-in TURN relay", q)
		}
	}
	if promSeries(t, api, "medcall_cluster_placements_total > 0") == 0 {
		t.Error("medcall_cluster_placements_total > 0: the bench's consultations were not placed through Redis")
	}
	if nrules < 10 {
		t.Errorf("prometheus loaded %d rules from %s, want every alert", nrules, rules)
	}
	t.Logf("%d dashboard queries and %d rule signals returned series", queries, nrules)
}

func get200(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return nil
}

func promGet(t *testing.T, u string, into any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s %s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
}

// promSeries runs an instant query and returns how many series it gave.
func promSeries(t *testing.T, api, q string) int {
	t.Helper()
	var r struct {
		Status string
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	promGet(t, api+"/api/v1/query?query="+url.QueryEscape(q), &r)
	return len(r.Data.Result)
}

package grafana

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Docker cannot run here, so the compose stack is checked as files: they
// parse, and they agree with each other (mount points, service names,
// datasource uids, rule files).

type composeFileT struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		ExtraHosts  []string          `yaml:"extra_hosts"`
	} `yaml:"services"`
}

type datasourcesFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name     string         `yaml:"name"`
		UID      string         `yaml:"uid"`
		Type     string         `yaml:"type"`
		URL      string         `yaml:"url"`
		Default  bool           `yaml:"isDefault"`
		JSONData map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

type dashboardsFile struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

type prometheusConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// mounts maps a service's container paths to host paths relative to
// deploy/.
func mounts(volumes []string) map[string]string {
	m := map[string]string{}
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			m[parts[1]] = parts[0]
		}
	}
	return m
}

func TestDeployFilesAgree(t *testing.T) {
	var c composeFileT
	loadYAML(t, composeFile, &c)
	var ds datasourcesFile
	loadYAML(t, filepath.Join(provisioning, "datasources", "muster.yaml"), &ds)
	var db dashboardsFile
	loadYAML(t, filepath.Join(provisioning, "dashboards", "muster.yaml"), &db)
	var pc prometheusConfig
	loadYAML(t, prometheusFile, &pc)

	for _, name := range []string{"prometheus", "grafana", "jaeger"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("compose: no %s service", name)
		}
		if s.Image == "" || strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":") {
			t.Errorf("compose: %s image %q: pin a version", name, s.Image)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("compose: %s publishes %q beyond loopback", name, p)
			}
		}
		for container, host := range mounts(s.Volumes) {
			if _, err := os.Stat(filepath.Join("..", host)); err != nil {
				t.Errorf("compose: %s mounts %s at %s: %v", name, host, container, err)
			}
		}
	}

	// Prometheus reads prometheus.yml and the alert rules beside it.
	pm := mounts(c.Services["prometheus"].Volumes)
	if pm["/etc/prometheus"] != "./prometheus" {
		t.Errorf("compose: prometheus must mount ./prometheus at /etc/prometheus, has %v", pm)
	}
	if !slices.Contains(c.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("compose: prometheus command %q does not load /etc/prometheus/prometheus.yml", c.Services["prometheus"].Command)
	}
	if !slices.Contains(c.Services["prometheus"].ExtraHosts, "host.docker.internal:host-gateway") {
		t.Error("compose: prometheus needs host.docker.internal to reach the demo on the host (Linux)")
	}
	if !slices.Contains(pc.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml: rule_files %q lacks alerts.yml", pc.RuleFiles)
	}
	scrapesDemo := false
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scrapesDemo = scrapesDemo || strings.HasPrefix(target, "host.docker.internal:")
			}
		}
	}
	if !scrapesDemo {
		t.Error("prometheus.yml: no job scrapes the demo at host.docker.internal")
	}

	// Grafana: provisioning mounted where Grafana reads it, the dashboards
	// where the provider looks.
	gm := mounts(c.Services["grafana"].Volumes)
	if gm["/etc/grafana/provisioning"] != "./grafana/provisioning" {
		t.Errorf("compose: grafana must mount ./grafana/provisioning at /etc/grafana/provisioning, has %v", gm)
	}
	if len(db.Providers) != 1 || db.Providers[0].Type != "file" {
		t.Fatalf("dashboard provisioning: want one file provider, got %+v", db.Providers)
	}
	if host := gm[db.Providers[0].Options.Path]; host != "./grafana/dashboards" {
		t.Errorf("dashboard provider reads %s, where compose mounts %q, want ./grafana/dashboards", db.Providers[0].Options.Path, host)
	}
	if home := c.Services["grafana"].Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != db.Providers[0].Options.Path+"/muster.json" {
		t.Errorf("grafana home dashboard %q is not the provisioned file", home)
	}

	// Datasources point at the compose services; the Prometheus one is
	// the default, so the dashboard's datasource variable picks it.
	var prom, jaeger bool
	for _, d := range ds.Datasources {
		switch d.Type {
		case "prometheus":
			prom = d.Default && strings.Contains(d.URL, "//prometheus:9090")
			if d.JSONData["timeInterval"] != pc.Global.ScrapeInterval {
				t.Errorf("datasource %s: timeInterval %v, want the scrape interval %s", d.Name, d.JSONData["timeInterval"], pc.Global.ScrapeInterval)
			}
		case "jaeger":
			jaeger = strings.Contains(d.URL, "//jaeger:16686") && d.UID == "jaeger"
		}
	}
	if !prom || !jaeger {
		t.Errorf("datasources: want a default Prometheus at http://prometheus:9090 and Jaeger (uid jaeger) at http://jaeger:16686: %+v", ds.Datasources)
	}
}

// TestPromtoolCheckConfig: promtool accepts the compose stack's
// prometheus.yml (and, through it, the rule files).
func TestPromtoolCheckConfig(t *testing.T) {
	promtool := findTool(t, "PROMTOOL", "promtool")
	out, err := runTool(t, filepath.Dir(prometheusFile), promtool, "check", "config", filepath.Base(prometheusFile))
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

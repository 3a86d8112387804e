package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The paths of the deployment files, relative to this module.
var (
	dashboardFile  = filepath.Join("dashboards", "muster.json")
	alertsFile     = filepath.Join("..", "prometheus", "alerts.yml")
	alertsTestFile = filepath.Join("..", "prometheus", "alerts_test.yml")
	prometheusFile = filepath.Join("..", "prometheus", "prometheus.yml")
	composeFile    = filepath.Join("..", "compose.yaml")
	provisioning   = "provisioning"
	repoRoot       = filepath.Join("..", "..")
)

// The parts of Grafana's classic JSON model the checks read. They are read
// from the committed file, the one users import.
type jsonDashboard struct {
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	SchemaVersion int             `json:"schemaVersion"`
	Templating    jsonTemplating  `json:"templating"`
	Panels        []jsonPanel     `json:"panels"`
	Annotations   json.RawMessage `json:"annotations"`
}

type jsonTemplating struct {
	List []jsonVariable `json:"list"`
}

type jsonVariable struct {
	Type       string       `json:"type"`
	Name       string       `json:"name"`
	Label      string       `json:"label"`
	Query      any          `json:"query"`
	Datasource *jsonDataRef `json:"datasource"`
	Multi      bool         `json:"multi"`
	IncludeAll bool         `json:"includeAll"`
	AllValue   string       `json:"allValue"`
	Refresh    int          `json:"refresh"`
}

type jsonDataRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type jsonGridPos struct {
	H, W, X, Y int
}

type jsonPanel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description"`
	Collapsed   bool         `json:"collapsed"`
	Datasource  *jsonDataRef `json:"datasource"`
	GridPos     jsonGridPos  `json:"gridPos"`
	Targets     []jsonTarget `json:"targets"`
	Panels      []jsonPanel  `json:"panels"` // a row's, when collapsed
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		Legend *struct {
			ShowLegend  bool   `json:"showLegend"`
			DisplayMode string `json:"displayMode"`
			Placement   string `json:"placement"`
		} `json:"legend"`
		Tooltip *struct {
			Mode string `json:"mode"`
		} `json:"tooltip"`
		ReduceOptions *struct {
			Calcs []string `json:"calcs"`
		} `json:"reduceOptions"`
	} `json:"options"`
}

type jsonTarget struct {
	RefID        string       `json:"refId"`
	Expr         string       `json:"expr"`
	LegendFormat string       `json:"legendFormat"`
	Datasource   *jsonDataRef `json:"datasource"`
}

// loadDashboard reads and decodes the committed dashboard.
func loadDashboard(t *testing.T) jsonDashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d jsonDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels returns every panel, rows included, with the panels of
// collapsed rows after their row.
func (d jsonDashboard) allPanels() []jsonPanel {
	var ps []jsonPanel
	for _, p := range d.Panels {
		ps = append(ps, p)
		ps = append(ps, p.Panels...)
	}
	return ps
}

// queryPanels returns every panel that is not a row.
func (d jsonDashboard) queryPanels() []jsonPanel {
	var ps []jsonPanel
	for _, p := range d.allPanels() {
		if p.Type != "row" {
			ps = append(ps, p)
		}
	}
	return ps
}

func (d jsonDashboard) variable(name string) (jsonVariable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return jsonVariable{}, false
}

// queryString returns a query variable's query, a string in the classic
// model (an object in newer Grafana versions, which this dashboard does not
// use).
func (v jsonVariable) queryString() string {
	s, _ := v.Query.(string)
	return s
}

// panelRef names a panel in failure messages.
func panelRef(p jsonPanel) string {
	return fmt.Sprintf("panel %d %q", p.ID, p.Title)
}

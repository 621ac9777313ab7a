package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	"github.com/exless/exless/daemon"
	"github.com/exless/exless/daemon/policy"
)

// explain is `exlessd config explain`: it evaluates the config file's
// policy for the identity and request in query (the query string the
// daemon's /v1/explain takes) and writes the explanation as JSON.
// `exlessctl policy explain --config FILE` runs it, so that exlessctl,
// which starts once per token, links neither the config parser nor the
// daemon, and so that the file is read exactly as exlessd reads it.
//
// Project names cannot be resolved offline: a project given as ORG/NAME
// matches rules that name it so, and ids match ids.
func explain(w io.Writer, path, query string) error {
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("--query: %w", err)
	}
	lc, err := loadConfig(path)
	if err != nil {
		return err
	}
	if !lc.Configured {
		return fmt.Errorf("%s says %s = false, so exlessd grants nothing: edit it for this site, then delete that line", path, configuredAttr)
	}
	pol, _, err := policy.Compile(lc.Rules, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	id, err := daemon.ParseExplainIdentity(q)
	if err != nil {
		return err
	}
	req := policy.Request{Action: q.Get("action"), Scope: q.Get("scope"), Project: q.Get("project")}
	if req.Action == "" {
		req.Action = policy.ActionToken
	}
	if policy.IsProjectName(req.Project) {
		req.ProjectName = req.Project
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(pol.Explain(id, req))
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// The text views (status, whoami) are rendered from the daemon's JSON, so
// that fields the daemon gains show up before this file learns about them.

var textFormats = []string{"text", "json"}

func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Value: "text", Usage: "output `FORMAT`: text (a table for people) or json (the daemon's reply, for scripts)"}
}

func checkTextFormat(c *cli.Context) (string, error) {
	f := c.String("format")
	if !slices.Contains(textFormats, f) {
		return "", usagef(c, "--format must be text or json, not %s", shown(f))
	}
	return f, nil
}

// writeView writes v as JSON, or as the table render makes of it.
func writeView(c *cli.Context, v any, render func(*table, object)) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if c.String("format") == "json" {
		_, err = fmt.Fprintf(c.App.Writer, "%s\n", raw)
		return err
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return fmt.Errorf("decode reply from exlessd: %w", err)
	}
	var t table
	render(&t, obj)
	return t.write(c.App.Writer)
}

// field is one member of a JSON object; object keeps the daemon's order.
type field struct {
	key   string
	value any // nil, bool, json.Number, string, []any or object
}

type object []field

// take returns the value of key and removes it, so that what is left at
// the end is what the renderer does not know.
func (o *object) take(key string) (any, bool) {
	for i, f := range *o {
		if f.key == key {
			*o = slices.Delete(*o, i, i+1)
			return f.value, true
		}
	}
	return nil, false
}

func decodeObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			obj = append(obj, field{key: k.(string), value: v})
		}
		_, err = dec.Token()
		return obj, err
	case json.Delim('['):
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err = dec.Token()
		return arr, err
	}
	return tok, nil
}

// table is a list of label, value rows, written "label\tvalue". Labels are
// kept to seven characters where the renderer chooses them, so that one tab
// aligns the values; scripts should use --format json.
type table struct{ rows [][2]string }

func (t *table) add(label, value string) { t.rows = append(t.rows, [2]string{label, value}) }

func (t *table) write(w io.Writer) error {
	var b strings.Builder
	for _, r := range t.rows {
		fmt.Fprintf(&b, "%s\t%s\n", r[0], oneLine(r[1]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// addRest renders the fields no renderer knows: one row per field, or per
// element of a list, labelled with the field's name.
func (t *table) addRest(o object) {
	for _, f := range o {
		label := strings.ReplaceAll(f.key, "_", " ")
		if list, ok := f.value.([]any); ok {
			for _, v := range list {
				t.add(label, plain(f.key, v))
			}
			continue
		}
		if f.value != nil {
			t.add(label, plain(f.key, f.value))
		}
	}
}

// plain renders a value for people: durations for *_seconds, yes/no,
// objects as key=value pairs. Values under names that suggest a secret are
// not shown; the daemon should never send one in a view, but a view is
// also pasted into tickets.
func plain(key string, v any) string {
	k := strings.ToLower(key)
	if k == "token" || strings.HasSuffix(k, "_token") || strings.Contains(k, "secret") || strings.Contains(k, "password") {
		return "(hidden)"
	}
	switch v := v.(type) {
	case nil:
		return "-"
	case bool:
		if v {
			return "yes"
		}
		return "no"
	case json.Number:
		if strings.HasSuffix(k, "_seconds") {
			if f, err := v.Float64(); err == nil {
				return time.Duration(f * float64(time.Second)).Round(time.Second).String()
			}
		}
		return v.String()
	case string:
		return v
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = plain(key, e)
		}
		return strings.Join(parts, ",")
	case object:
		parts := make([]string, 0, len(v))
		for _, f := range v {
			parts = append(parts, f.key+"="+plain(f.key, f.value))
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

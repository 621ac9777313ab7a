package daemon

import (
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decodeBody fills the struct that dst points to from body, following its
// `hcl:"name,kind"` tags, kind being optional, block or label (none: a
// required attribute). It does what the config needs of gohcl.DecodeBody:
// gohcl links hclwrite and through it go-cmp, whose package init alone cost
// exlessctl, which parses configs only for offline explain, ~1 ms at every
// start. Attribute fields are string, *string, *bool, *int, *float64 or
// []string; block fields a struct pointer (at most one block) or a slice.
func decodeBody(body hcl.Body, dst any) hcl.Diagnostics {
	return decodeStruct(body, nil, reflect.ValueOf(dst).Elem())
}

type hclField struct {
	index int
	name  string
	kind  string // "attr", "optional", "block" or "label"
}

func hclFields(t reflect.Type) []hclField {
	var out []hclField
	for i := 0; i < t.NumField(); i++ {
		tag, ok := t.Field(i).Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		if kind == "" {
			kind = "attr"
		}
		out = append(out, hclField{index: i, name: name, kind: kind})
	}
	return out
}

func decodeStruct(body hcl.Body, labels []string, v reflect.Value) hcl.Diagnostics {
	fields := hclFields(v.Type())
	var schema hcl.BodySchema
	for _, f := range fields {
		switch f.kind {
		case "attr", "optional":
			schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: f.name, Required: f.kind == "attr"})
		case "block":
			var sub []string
			for _, lf := range hclFields(blockType(v.Field(f.index).Type())) {
				if lf.kind == "label" {
					sub = append(sub, lf.name)
				}
			}
			schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: f.name, LabelNames: sub})
		}
	}
	content, diags := body.Content(&schema)
	li := 0
	for _, f := range fields {
		fv := v.Field(f.index)
		switch f.kind {
		case "label":
			if li < len(labels) {
				fv.SetString(labels[li])
			}
			li++
		case "attr", "optional":
			if a, ok := content.Attributes[f.name]; ok {
				diags = append(diags, decodeAttr(a, fv)...)
			}
		case "block":
			blocks := content.Blocks.OfType(f.name)
			if fv.Kind() == reflect.Pointer {
				if len(blocks) > 1 {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError, Summary: "Duplicate " + f.name + " block",
						Detail:  fmt.Sprintf("Only one %s block is allowed; another is at %s.", f.name, blocks[0].DefRange),
						Subject: blocks[1].DefRange.Ptr(),
					})
					continue
				}
				if len(blocks) == 1 {
					nv := reflect.New(fv.Type().Elem())
					diags = append(diags, decodeStruct(blocks[0].Body, blocks[0].Labels, nv.Elem())...)
					fv.Set(nv)
				}
				continue
			}
			if len(blocks) == 0 {
				continue
			}
			s := reflect.MakeSlice(fv.Type(), len(blocks), len(blocks))
			for i, b := range blocks {
				diags = append(diags, decodeStruct(b.Body, b.Labels, s.Index(i))...)
			}
			fv.Set(s)
		}
	}
	return diags
}

func blockType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		return t.Elem()
	}
	return t
}

// decodeAttr evaluates a (no variables, no functions) and stores it in v.
func decodeAttr(a *hcl.Attribute, v reflect.Value) hcl.Diagnostics {
	val, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return diags
	}
	bad := func(err error) hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Unsuitable value for " + a.Name,
			Detail: err.Error(), Subject: a.Expr.Range().Ptr(),
		})
	}
	t := v.Type()
	ptr := t.Kind() == reflect.Pointer
	if ptr {
		t = t.Elem()
	}
	var want cty.Type
	switch t.Kind() {
	case reflect.String:
		want = cty.String
	case reflect.Bool:
		want = cty.Bool
	case reflect.Int, reflect.Float64:
		want = cty.Number
	case reflect.Slice:
		want = cty.List(cty.String)
	default:
		panic("decodeAttr: unsupported field type " + t.String())
	}
	val, err := convert.Convert(val, want)
	if err != nil {
		return bad(err)
	}
	if val.IsNull() {
		if !ptr && t.Kind() != reflect.Slice {
			return bad(fmt.Errorf("a value is required"))
		}
		return diags
	}
	if !val.IsWhollyKnown() {
		return bad(fmt.Errorf("the value is not known"))
	}
	out := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.String:
		out.SetString(val.AsString())
	case reflect.Bool:
		out.SetBool(val.True())
	case reflect.Int:
		bf := val.AsBigFloat()
		n, acc := bf.Int64()
		if acc != big.Exact || n != int64(int(n)) {
			return bad(fmt.Errorf("%s is not a whole number in range", bf.Text('g', -1)))
		}
		out.SetInt(n)
	case reflect.Float64:
		f, _ := val.AsBigFloat().Float64()
		out.SetFloat(f)
	case reflect.Slice:
		list := reflect.MakeSlice(t, 0, val.LengthInt())
		for it := val.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				return bad(fmt.Errorf("the list holds a null"))
			}
			list = reflect.Append(list, reflect.ValueOf(e.AsString()))
		}
		out.Set(list)
	}
	if ptr {
		p := reflect.New(t)
		p.Elem().Set(out)
		v.Set(p)
	} else {
		v.Set(out)
	}
	return diags
}

package store

import (
	"fmt"
	"strings"
	"time"
)

// timeConds are the conditions of bounds on a time column, at writing a
// time's placeholder; an unknown comparator is an error, not SQL.
func timeConds(col string, bounds []TimeBound, at func(time.Time) string) ([]string, error) {
	var conds []string
	for _, b := range bounds {
		switch b.Op {
		case GE, GT, LE, LT:
		default:
			return nil, fmt.Errorf("unknown time comparator %q", b.Op)
		}
		conds = append(conds, col+" "+string(b.Op)+" "+at(b.At))
	}
	return conds, nil
}

// allOf is the conjunction of conds; TRUE when there are none.
func allOf(conds []string) string {
	if len(conds) == 0 {
		return "TRUE"
	}
	return strings.Join(conds, " AND ")
}

// The SQL conditions the searches share, written with arg (which adds an
// argument and returns its placeholder) and list (a comma list of
// placeholders for values).

// columnConds are the conditions of m on a text column: any of, none of,
// and missing (the empty string) or not.
func columnConds(col string, m TokenMatch, list func([]string) string) []string {
	var conds []string
	if len(m.Any) > 0 {
		conds = append(conds, col+" IN ("+list(m.Any)+")")
	}
	if len(m.Not) > 0 {
		conds = append(conds, col+" NOT IN ("+list(m.Not)+")")
	}
	if m.Missing != nil {
		if *m.Missing {
			conds = append(conds, col+" = ''")
		} else {
			conds = append(conds, col+" <> ''")
		}
	}
	return conds
}

// tokenConds are the conditions of token filters over the rows of a token
// table "t" (param, system, code), each a subquery of sub: "SELECT 1 FROM
// … t WHERE <t is the row's> AND t.param = ", which the filter's Param
// completes. A value that takes any system (or any code) leaves that
// comparison out.
func tokenConds(sub string, filters []TokenFilter, arg func(any) string) []string {
	values := func(vs []TokenValue) string {
		ors := make([]string, len(vs))
		for i, v := range vs {
			var ands []string
			if !v.AnySystem {
				ands = append(ands, "t.system = "+arg(v.System))
			}
			if !v.AnyCode {
				ands = append(ands, "t.code = "+arg(v.Code))
			}
			switch len(ands) {
			case 0:
				ors[i] = "TRUE"
			case 1:
				ors[i] = ands[0]
			default:
				ors[i] = "(" + strings.Join(ands, " AND ") + ")"
			}
		}
		return strings.Join(ors, " OR ")
	}
	var conds []string
	for _, f := range filters {
		if len(f.Any) > 0 {
			conds = append(conds, "EXISTS ("+sub+arg(f.Param)+" AND ("+values(f.Any)+"))")
		}
		if len(f.Not) > 0 {
			conds = append(conds, "NOT EXISTS ("+sub+arg(f.Param)+" AND ("+values(f.Not)+"))")
		}
		if f.Missing != nil {
			if *f.Missing {
				conds = append(conds, "NOT EXISTS ("+sub+arg(f.Param)+")")
			} else {
				conds = append(conds, "EXISTS ("+sub+arg(f.Param)+")")
			}
		}
	}
	return conds
}

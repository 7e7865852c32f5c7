package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet returns a flag set whose usage text says what the command does
// and shows an example. Flags not given on the command line are read from
// CAREBRIDGE_<NAME> environment variables (see applyEnv).
func newFlagSet(env *environment, name, synopsis, about, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := env.stdout
		fmt.Fprintf(w, "Usage: carebridge %s\n\n%s\n\nFlags (each also read from the environment variable in brackets):\n", synopsis, strings.TrimSpace(about))
		fs.VisitAll(func(f *flag.Flag) {
			typ, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s %s  [%s]\n", f.Name, typ, envName(f.Name))
			fmt.Fprintf(w, "        %s", usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
		fmt.Fprintf(w, "\nExample:\n%s\n", example)
	}
	return fs
}

func envName(flagName string) string {
	return "CAREBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills each flag not given on the command line
// from its environment variable. --help prints the usage and returns
// errHelp, which callers return as nil.
func parseFlags(env *environment, fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // the flag package has printed the usage
			return errHelp
		}
		fmt.Fprintf(env.stderr, "carebridge %s: %v\nRun \"carebridge %s --help\" for the flags.\n", fs.Name(), err, fs.Name())
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || bad != nil {
			return
		}
		name := envName(f.Name)
		if v := env.getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				// Never echo the value: it may be a secret.
				bad = fmt.Errorf("environment variable %s: invalid value for --%s", name, f.Name)
			}
		}
	})
	if bad != nil {
		fmt.Fprintf(env.stderr, "carebridge %s: %v\n", fs.Name(), bad)
		return errUsage
	}
	return nil
}

// errHelp ends a command after printing its help; it is not a failure.
var errHelp = errors.New("help requested")

func helpOK(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// Package flagenv parses command-line flags with environment-variable
// fallbacks, so that every setting of a service can come from either.
//
// A flag named "kafka-brokers" parsed with prefix "COLLECTION" falls back to
// the variable COLLECTION_KAFKA_BROKERS. A flag given on the command line
// always wins over the environment.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName returns the environment variable consulted for the flag name.
func EnvName(prefix, name string) string {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if prefix == "" {
		return n
	}
	return strings.ToUpper(prefix) + "_" + n
}

// Parse parses args into fs and then fills every flag not given on the
// command line from its environment variable, if set. The usage text of fs is
// extended to name the variables. It returns flag.ErrHelp for -help, an
// error for an argument after the flags, and EnvErrors naming every variable
// whose value its flag refuses.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	if err := ParseArgs(fs, prefix, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags must come as -name=value)", fs.Arg(0))
	}
	return nil
}

// ParseArgs is Parse for a command that takes arguments after its flags (a
// command and its operands): they are left in fs.Args().
func ParseArgs(fs *flag.FlagSet, prefix string, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(prefix, f.Name))
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs EnvErrors
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(prefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			prev := f.Value.String()
			if e := fs.Set(f.Name, v); e != nil {
				errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, env, e))
				// The flag package's numeric and boolean values take
				// the zero value on a parse error: put the default back,
				// which is what -check-config's validation then judges.
				_ = f.Value.Set(prev)
			}
		}
	})
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// EnvErrors is every environment variable that Parse or ParseArgs could
// not set its flag from, in the flags' order. Its message is one line.
type EnvErrors []error

func (e EnvErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the error of each variable, for errors.Is and errors.As.
func (e EnvErrors) Unwrap() []error { return e }

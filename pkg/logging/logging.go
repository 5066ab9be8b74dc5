// Package logging builds the process's slog.Logger from configuration.
//
// Services create one logger in main and hand it down; nothing logs through a
// global. JSON is the production format; text is easier to read locally.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Config selects the log format and level.
type Config struct {
	Format string // "json" or "text"
	Level  string // "debug", "info", "warn" or "error"
}

// RegisterFlags registers the logging flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.Level, "log-level", "info", "minimum log level: debug, info, warn or error")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if c.Format != "json" && c.Format != "text" {
		return fmt.Errorf("-log-format must be json or text, got %q", c.Format)
	}
	if _, err := parseLevel(c.Level); err != nil {
		return err
	}
	return nil
}

// New returns a logger writing to w. Call Validate first: an invalid level
// falls back to info.
func New(c Config, w io.Writer) *slog.Logger {
	level, err := parseLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("-log-level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

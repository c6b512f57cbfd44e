package approvals

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written as Go writes durations ("90s",
// "1h30m") in the YAML config and in JSON, so that people read and write
// the same spelling everywhere.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText reads what time.ParseDuration reads. A bare number is
// refused rather than read as nanoseconds: "ttl: 3600" is far more likely
// meant as seconds than as 3.6 microseconds.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, such as 90s, 30m or 8h", b)
	}
	*d = Duration(v)
	return nil
}

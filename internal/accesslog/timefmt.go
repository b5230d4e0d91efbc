package accesslog

import (
	"fmt"
	"strconv"
	"time"
)

// appendDefaultTime appends t as Envoy's default %START_TIME%,
// "%Y-%m-%dT%H:%M:%E3SZ" in UTC: 2016-04-15T20:17:00.310Z
// (AccessLogDateTimeFormatter::fromTime).
func appendDefaultTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	dst = appendInt(dst, year, 4)
	dst = append(dst, '-')
	dst = appendInt(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendInt(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendInt(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendInt(dst, min, 2)
	dst = append(dst, ':')
	dst = appendInt(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendInt(dst, t.Nanosecond()/1e6, 3)
	return append(dst, 'Z')
}

// appendInt appends n zero-padded to width digits (more when n needs them).
func appendInt(dst []byte, n, width int) []byte {
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
		if n == 0 && width <= 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}

// timeFormat is a compiled %START_TIME(...)% format: strftime specifiers
// evaluated in UTC, as Envoy's DateFormatter does, plus Envoy's %s (seconds
// since the epoch) and %f / %1f..%9f (fractional seconds, default 9 digits,
// truncated), and absl's %E<n>S, %E*S and %Ez
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-start-time).
type timeFormat struct {
	segs []timeSeg
}

type timeSeg struct {
	// spec is the conversion byte ('Y', 'f'...), 0 for a literal.
	spec byte
	// width is the digit count of %Nf and %ENS; -1 for %E*S.
	width int
	lit   string
}

// compileTimeFormat compiles a strftime format once. A specifier herald does
// not know is kept literally, as strftime does.
func compileTimeFormat(format string) (*timeFormat, error) {
	tf := &timeFormat{}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			tf.segs = append(tf.segs, timeSeg{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			lit = append(lit, c)
			continue
		}
		rest := format[i+1:]
		switch {
		case rest[0] >= '1' && rest[0] <= '9' && len(rest) > 1 && rest[1] == 'f':
			flush()
			tf.segs = append(tf.segs, timeSeg{spec: 'f', width: int(rest[0] - '0')})
			i += 2
		case rest[0] == 'E' && len(rest) > 2 && rest[2] == 'S' && (rest[1] == '*' || rest[1] >= '0' && rest[1] <= '9'):
			flush()
			w := -1
			if rest[1] != '*' {
				w = int(rest[1] - '0')
			}
			tf.segs = append(tf.segs, timeSeg{spec: 'S', width: w})
			i += 3
		case rest[0] == 'E' && len(rest) > 1 && rest[1] == 'z':
			flush()
			tf.segs = append(tf.segs, timeSeg{spec: ':'})
			i += 2
		case rest[0] == 'n':
			// Envoy rejects newlines in time formats: the result may land in a
			// header (SystemTimeFormatter).
			return nil, fmt.Errorf("invalid START_TIME format %q: format string contains newline", format)
		case isTimeSpec(rest[0]):
			flush()
			seg := timeSeg{spec: rest[0]}
			if rest[0] == 'f' {
				seg.width = 9
			}
			tf.segs = append(tf.segs, seg)
			i++
		case rest[0] == '%':
			lit = append(lit, '%')
			i++
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return tf, nil
}

func isTimeSpec(c byte) bool {
	switch c {
	case 'a', 'A', 'b', 'h', 'B', 'c', 'C', 'd', 'D', 'e', 'F', 'f', 'g', 'G', 'H', 'I', 'j', 'k', 'l',
		'm', 'M', 'p', 'r', 'R', 's', 'S', 't', 'T', 'u', 'U', 'V', 'w', 'W', 'x', 'X', 'y', 'Y', 'z', 'Z':
		return true
	}
	return false
}

var (
	shortDays   = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDays    = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	shortMonths = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	longMonths  = [...]string{"January", "February", "March", "April", "May", "June", "July", "August",
		"September", "October", "November", "December"}
)

// append formats t (in UTC) without allocating.
func (tf *timeFormat) append(dst []byte, t time.Time) []byte {
	t = t.UTC()
	for _, s := range tf.segs {
		if s.spec == 0 {
			dst = append(dst, s.lit...)
			continue
		}
		dst = appendTimeSpec(dst, t, s)
	}
	return dst
}

func appendTimeSpec(dst []byte, t time.Time, s timeSeg) []byte {
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	wday := int(t.Weekday())
	yday := t.YearDay() - 1
	switch s.spec {
	case 'a':
		return append(dst, shortDays[wday]...)
	case 'A':
		return append(dst, longDays[wday]...)
	case 'b', 'h':
		return append(dst, shortMonths[month-1]...)
	case 'B':
		return append(dst, longMonths[month-1]...)
	case 'c': // C locale: "%a %b %e %H:%M:%S %Y"
		dst = append(dst, shortDays[wday]...)
		dst = append(dst, ' ')
		dst = append(dst, shortMonths[month-1]...)
		dst = append(dst, ' ')
		dst = appendSpacePadded(dst, day)
		dst = append(dst, ' ')
		dst = appendHMS(dst, hour, min, sec)
		dst = append(dst, ' ')
		return appendInt(dst, year, 4)
	case 'C':
		return appendInt(dst, year/100, 2)
	case 'd':
		return appendInt(dst, day, 2)
	case 'D', 'x': // %m/%d/%y
		dst = appendInt(dst, int(month), 2)
		dst = append(dst, '/')
		dst = appendInt(dst, day, 2)
		dst = append(dst, '/')
		return appendInt(dst, year%100, 2)
	case 'e':
		return appendSpacePadded(dst, day)
	case 'F':
		dst = appendInt(dst, year, 4)
		dst = append(dst, '-')
		dst = appendInt(dst, int(month), 2)
		dst = append(dst, '-')
		return appendInt(dst, day, 2)
	case 'f':
		return appendFraction(dst, t.Nanosecond(), s.width)
	case 'g':
		y, _ := t.ISOWeek()
		return appendInt(dst, y%100, 2)
	case 'G':
		y, _ := t.ISOWeek()
		return appendInt(dst, y, 4)
	case 'H':
		return appendInt(dst, hour, 2)
	case 'I':
		return appendInt(dst, hour12(hour), 2)
	case 'j':
		return appendInt(dst, yday+1, 3)
	case 'k':
		return appendSpacePadded(dst, hour)
	case 'l':
		return appendSpacePadded(dst, hour12(hour))
	case 'm':
		return appendInt(dst, int(month), 2)
	case 'M':
		return appendInt(dst, min, 2)
	case 'p':
		if hour < 12 {
			return append(dst, "AM"...)
		}
		return append(dst, "PM"...)
	case 'r': // %I:%M:%S %p
		dst = appendHMS(dst, hour12(hour), min, sec)
		if hour < 12 {
			return append(dst, " AM"...)
		}
		return append(dst, " PM"...)
	case 'R':
		dst = appendInt(dst, hour, 2)
		dst = append(dst, ':')
		return appendInt(dst, min, 2)
	case 's':
		return strconv.AppendInt(dst, t.Unix(), 10)
	case 'S':
		dst = appendInt(dst, sec, 2)
		switch {
		case s.width > 0:
			dst = append(dst, '.')
			return appendFraction(dst, t.Nanosecond(), s.width)
		case s.width < 0 && t.Nanosecond() != 0: // %E*S: as many digits as needed
			dst = append(dst, '.')
			n := len(dst)
			dst = appendFraction(dst, t.Nanosecond(), 9)
			for len(dst) > n && dst[len(dst)-1] == '0' {
				dst = dst[:len(dst)-1]
			}
		}
		return dst
	case 't':
		return append(dst, '\t')
	case 'T', 'X':
		return appendHMS(dst, hour, min, sec)
	case 'u':
		if wday == 0 {
			return append(dst, '7')
		}
		return appendInt(dst, wday, 1)
	case 'U':
		return appendInt(dst, (yday+7-wday)/7, 2)
	case 'V':
		_, w := t.ISOWeek()
		return appendInt(dst, w, 2)
	case 'w':
		return appendInt(dst, wday, 1)
	case 'W':
		return appendInt(dst, (yday+7-(wday+6)%7)/7, 2)
	case 'y':
		return appendInt(dst, year%100, 2)
	case 'Y':
		return appendInt(dst, year, 4)
	case 'z':
		return append(dst, "+0000"...)
	case ':':
		return append(dst, "+00:00"...)
	case 'Z':
		return append(dst, "UTC"...)
	}
	return dst
}

func appendHMS(dst []byte, h, m, s int) []byte {
	dst = appendInt(dst, h, 2)
	dst = append(dst, ':')
	dst = appendInt(dst, m, 2)
	dst = append(dst, ':')
	return appendInt(dst, s, 2)
}

func appendSpacePadded(dst []byte, n int) []byte {
	if n < 10 {
		dst = append(dst, ' ')
	}
	return strconv.AppendInt(dst, int64(n), 10)
}

func hour12(h int) int {
	h %= 12
	if h == 0 {
		return 12
	}
	return h
}

// appendFraction appends the first width digits of the nanoseconds.
func appendFraction(dst []byte, nanos, width int) []byte {
	var buf [9]byte
	for i := 8; i >= 0; i-- {
		buf[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	return append(dst, buf[:width]...)
}

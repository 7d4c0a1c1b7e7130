package protocol

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
)

// numberString is JavaScript's String(Number(s)), which the original client
// applies to a ping's value to make its pong.
func numberString(s string) string { return formatNumber(parseNumber(s)) }

// parseNumber is JavaScript's Number(s) for a string (ECMA-262
// StringToNumber): trimmed of JavaScript white space, empty is 0, 0x/0o/0b
// integers, decimal literals with an optional sign and exponent, Infinity;
// anything else is NaN.
func parseNumber(s string) float64 {
	s = strings.TrimFunc(s, isJSSpace)
	if s == "" {
		return 0
	}
	if len(s) > 2 && s[0] == '0' {
		base := 0
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 0 {
			// big.Int.SetString would accept a sign; JavaScript does not here.
			if s[2] == '+' || s[2] == '-' {
				return math.NaN()
			}
			n, ok := new(big.Int).SetString(s[2:], base)
			if !ok {
				return math.NaN()
			}
			f, _ := new(big.Float).SetInt(n).Float64() // rounds to nearest even
			return f
		}
	}
	unsigned := s
	if s[0] == '+' || s[0] == '-' {
		unsigned = s[1:]
	}
	if unsigned == "Infinity" {
		if s[0] == '-' {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	if !isDecimal(unsigned) {
		return math.NaN()
	}
	// Out of range is ±Inf or 0 with ErrRange, as in JavaScript.
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// isDecimal reports whether s is digits, optionally with a fraction, and an
// optional exponent: "1", "1.", ".5", "1.5e-3". strconv.ParseFloat accepts
// more (underscores, "inf", hexadecimal), which JavaScript does not.
func isDecimal(s string) bool {
	digits := func() int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		s = s[n:]
		return n
	}
	n := digits()
	if s != "" && s[0] == '.' {
		s = s[1:]
		n += digits()
	}
	if n == 0 {
		return false
	}
	if s != "" && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s != "" && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		if digits() == 0 {
			return false
		}
	}
	return s == ""
}

// isJSSpace reports whether JavaScript's Number() trims r: WhiteSpace and
// LineTerminator of ECMA-262 (unicode.IsSpace differs: it has U+0085 and
// lacks U+FEFF).
func isJSSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0xFEFF, 0x2028, 0x2029:
		return true
	}
	return unicode.Is(unicode.Zs, r)
}

// formatNumber is JavaScript's Number::toString(f) in base 10: the shortest
// digits that round-trip, in plain notation for exponents from -7 to 20 and
// in exponential notation ("1e+21", "1.5e-7") otherwise.
func formatNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f == 0:
		return "0" // -0 too
	case math.IsInf(f, 1):
		return "Infinity"
	case f < 0:
		return "-" + formatNumber(-f)
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	// f = 0.digits × 10^n with k digits, as the specification states it.
	k, n := len(digits), x+1
	switch {
	case k <= n && n <= 21:
		return digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return "0." + strings.Repeat("0", -n) + digits
	}
	e := "e+" + strconv.Itoa(n-1)
	if n-1 < 0 {
		e = "e-" + strconv.Itoa(1-n)
	}
	if k == 1 {
		return digits + e
	}
	return digits[:1] + "." + digits[1:] + e
}

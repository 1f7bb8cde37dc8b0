package cli

import "testing"

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cam1", "cam1"},
		{"caméra 1", "caméra 1"},
		{`pull stream "cam" on m2: timeout`, `pull stream "cam" on m2: timeout`},
		{"cam\x1b[31m", `"cam\x1b[31m"`},
		{"a\tb", `"a\tb"`},
		{"a\nb", `"a\nb"`},
		{"evil\u202etxt", `"evil\u202etxt"`},
		{"\xff", `"\xff"`},
		{"\uFFFD", "\uFFFD"},
		{"", `""`},
		{`"quoted"`, `"\"quoted\""`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

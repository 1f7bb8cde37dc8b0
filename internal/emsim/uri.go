package emsim

import (
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
)

// uriInfo is a pull URI parsed the way EMS reports it in a pullStream answer.
type uriInfo struct {
	original      string
	scheme        string
	user, pass    string
	host          string
	port          int
	portSpecified bool
	documentPath  string // up to and including the last '/'
	document      string // after the last '/', without the query
	query         string // after '?', without it
	ip            string // resolved address
}

// defaultPorts lists the schemes a pull accepts, with their default port.
func defaultPort(scheme string) (int, bool) {
	switch scheme {
	case "rtmp", "rtmpe", "rtmpte":
		return 1935, true
	case "rtmpt":
		return 80, true
	case "rtmps":
		return 443, true
	case "rtsp":
		return 554, true
	case "http":
		return 80, true
	case "https":
		return 443, true
	case "rtp", "udp", "tcp", "dstcp", "dsudp", "mpegtsudp", "mpegtstcp":
		return 0, true
	}
	return 0, false
}

// parseURI parses a pull URI; ok is false for URIs EMS would answer with
// "Invalid URI".
func parseURI(s string) (u uriInfo, ok bool) {
	u.original = s
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		return u, false
	}
	u.scheme = strings.ToLower(scheme)
	def, known := defaultPort(u.scheme)
	if !known {
		return u, false
	}
	authority, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		u.user, u.pass, _ = strings.Cut(userinfo, ":")
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return u, false
		}
		host = authority[1:end]
		if tail := authority[end+1:]; tail != "" {
			if !strings.HasPrefix(tail, ":") {
				return u, false
			}
			port = tail[1:]
			u.portSpecified = true
		}
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
		u.portSpecified = true
	}
	if host == "" || strings.ContainsAny(host, " \t") {
		return u, false
	}
	u.host = host
	u.port = def
	if u.portSpecified {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return u, false
		}
		u.port = n
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, u.query = path[:i], path[i+1:]
	}
	slash := strings.LastIndexByte(path, '/')
	u.documentPath, u.document = path[:slash+1], path[slash+1:]
	u.ip = resolveHost(host)
	return u, true
}

// resolveHost returns the address a host name stands for without any name
// lookup: IP literals are themselves, localhost is 127.0.0.1, and any other
// name gets a stable made-up address in 203.0.113.0/24 (TEST-NET-3).
func resolveHost(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String()
	}
	if strings.EqualFold(host, "localhost") {
		return "127.0.0.1"
	}
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(host)))
	return "203.0.113." + strconv.Itoa(int(h.Sum32()%254)+1)
}

// memberHost reports whether the URI's host is an IPv4 literal in
// 127.0.0.0/8, that is an emulated member, and returns it.
func (u uriInfo) memberHost() (string, bool) {
	a, err := netip.ParseAddr(u.host)
	if err != nil || !a.Is4() || !a.IsLoopback() {
		return "", false
	}
	return a.String(), true
}

func (u uriInfo) hostPort() string {
	h := u.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if u.portSpecified {
		h += ":" + strconv.Itoa(u.port)
	}
	return h
}

func (u uriInfo) withQuery(s string) string {
	if u.query == "" {
		return s
	}
	return s + "?" + u.query
}

// object returns the parsed URI object of a pullStream answer.
func (u uriInfo) object() jobj {
	fullDocPath := u.documentPath + u.document
	hp := u.hostPort()
	auth := ""
	if u.user != "" || u.pass != "" {
		auth = u.user
		if u.pass != "" {
			auth += ":" + u.pass
		}
		auth += "@"
	}
	paramsObj := map[string]string{}
	if u.query != "" {
		for piece := range strings.SplitSeq(u.query, "&") {
			if piece == "" {
				continue
			}
			k, v, _ := strings.Cut(piece, "=")
			paramsObj[k] = v
		}
	}
	o := jobj{
		{"document", u.document},
		{"documentPath", u.documentPath},
		{"documentWithFullParameters", u.withQuery(u.document)},
		{"fullDocumentPath", fullDocPath},
		{"fullDocumentPathWithParameters", u.withQuery(fullDocPath)},
		{"fullParameters", u.query},
		{"fullUri", u.withQuery(u.scheme + "://" + hp + fullDocPath)},
		{"fullUriWithAuth", u.withQuery(u.scheme + "://" + auth + hp + fullDocPath)},
		{"generatedPort", 0},
		{"host", u.host},
		{"ip", u.ip},
		{"originalUri", u.original},
		{"parameters", paramsObj},
		{"password", u.pass},
		{"port", u.port},
		{"portSpecified", u.portSpecified},
		{"scheme", u.scheme},
		{"userName", u.user},
	}
	return o
}

// redactURI removes user information from a URI for logging.
func redactURI(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	end := strings.IndexByte(rest, '/')
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		rest = "REDACTED@" + rest[at+1:]
	}
	return scheme + "://" + rest
}

// appendJSON appends what appendObject(b, u.object()) appends, building no
// object on the way. A URI with a query takes object's way, for its
// parameters' map.
func (u uriInfo) appendJSON(b []byte) []byte {
	if u.query != "" {
		return appendObject(b, u.object())
	}
	host := u.host
	lb, rb := "", ""
	if strings.Contains(host, ":") {
		lb, rb = "[", "]"
	}
	port := ""
	if u.portSpecified {
		port = ":" + strconv.Itoa(u.port)
	}
	at := ""
	if u.user != "" || u.pass != "" {
		at = "@"
	}
	colon := ""
	if u.pass != "" {
		colon = ":"
	}
	key := func(k string) { b = append(appendString(b, k), ':') }
	b = append(b, '{')
	key("document")
	b = append(appendString(b, u.document), ',')
	key("documentPath")
	b = append(appendString(b, u.documentPath), ',')
	key("documentWithFullParameters")
	b = append(appendString(b, u.document), ',')
	key("fullDocumentPath")
	b = append(appendStringOf(b, u.documentPath, u.document), ',')
	key("fullDocumentPathWithParameters")
	b = append(appendStringOf(b, u.documentPath, u.document), ',')
	key("fullParameters")
	b = append(appendString(b, ""), ',')
	key("fullUri")
	b = append(appendStringOf(b, u.scheme, "://", lb, host, rb, port, u.documentPath, u.document), ',')
	key("fullUriWithAuth")
	b = append(appendStringOf(b, u.scheme, "://", u.user, colon, u.pass, at, lb, host, rb, port, u.documentPath, u.document), ',')
	key("generatedPort")
	b = append(b, "0,"...)
	key("host")
	b = append(appendString(b, u.host), ',')
	key("ip")
	b = append(appendString(b, u.ip), ',')
	key("originalUri")
	b = append(appendString(b, u.original), ',')
	key("parameters")
	b = append(b, "{},"...)
	key("password")
	b = append(appendString(b, u.pass), ',')
	key("port")
	b = append(strconv.AppendInt(b, int64(u.port), 10), ',')
	key("portSpecified")
	b = append(strconv.AppendBool(b, u.portSpecified), ',')
	key("scheme")
	b = append(appendString(b, u.scheme), ',')
	key("userName")
	b = appendString(b, u.user)
	return append(b, '}')
}

package warninglist

// The built-in list, by group. Keep to values that are certain: a wrong
// entry here is a block the mesh can never make.
var builtinGroups = []struct {
	list, reason string
	values       []string
}{
	{"public-resolvers", "public DNS resolver", []string{
		// Google Public DNS
		"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
		// Cloudflare
		"1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
		// Quad9
		"9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
		// OpenDNS
		"208.67.222.222", "208.67.220.220", "2620:119:35::35", "2620:119:53::53",
	}},
	{"cloud-metadata", "cloud instance metadata or platform service", []string{
		"169.254.169.254", // AWS, GCP, Azure, OpenStack metadata
		"fd00:ec2::254",   // AWS metadata over IPv6
		"168.63.129.16",   // Azure platform (wire server, DNS)
	}},
	{"cdn-cloudflare", "Cloudflare CDN range shared by many sites", []string{
		"173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22",
		"141.101.64.0/18", "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20",
		"197.234.240.0/22", "198.41.128.0/17", "162.158.0.0/15", "104.16.0.0/13",
		"104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
		"2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
		"2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32",
	}},
	{"reserved-names", "special-use or reserved name (RFC 2606, 6761, 6762, 7686)", []string{
		"localhost", "invalid", "test", "example", "example.com", "example.net", "example.org",
		"local", "onion",
	}},
	{"top-domains", "among the most visited registrable domains", []string{
		"google.com", "youtube.com", "gstatic.com", "googleapis.com", "gmail.com",
		"facebook.com", "instagram.com", "whatsapp.com",
		"microsoft.com", "windows.com", "windowsupdate.com", "office.com", "live.com", "bing.com", "linkedin.com",
		"apple.com", "icloud.com",
		"amazon.com", "cloudflare.com", "github.com",
		"wikipedia.org", "yahoo.com", "netflix.com", "twitter.com", "x.com", "zoom.us",
	}},
}

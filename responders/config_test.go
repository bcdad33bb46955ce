package responders_test

import (
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/responders"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := responders.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.DryRun || c.Nftables.Enabled || c.DNS.Enabled || len(c.Exec) > 0 {
		t.Errorf("defaults enable more than the dry run: %+v", c)
	}
	if c.Resync != 30*time.Second || c.Nftables.Table != "meshward" || c.DNS.RPZOrigin != "rpz.meshward." || c.DNS.ReloadTimeout != 30*time.Second {
		t.Errorf("defaults %+v", c)
	}
	if got := c.Enabled(); !slices.Equal(got, []string{"dry-run"}) {
		t.Errorf("Enabled() = %v", got)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'x'
	}
	for name, tc := range map[string]struct {
		edit func(c *responders.Config)
		want []string
	}{
		"resync":         {func(c *responders.Config) { c.Resync = 0 }, []string{"resync"}},
		"nothing":        {func(c *responders.Config) { c.DryRun = false }, []string{"dry_run"}},
		"no table":       {func(c *responders.Config) { c.Nftables = responders.NftablesConfig{Enabled: true} }, []string{"nftables.table"}},
		"long table":     {func(c *responders.Config) { c.Nftables = responders.NftablesConfig{Enabled: true, Table: string(long)} }, []string{"nftables.table"}},
		"table when off": {func(c *responders.Config) { c.Nftables.Table = "" }, nil},
		"dns": {func(c *responders.Config) { c.DNS = responders.DNSConfig{Enabled: true} },
			[]string{"dns.unbound_path", "dns.reload_timeout"}},
		"exec": {func(c *responders.Config) {
			c.Exec = []responders.ExecConfig{
				{Add: []string{"true"}},
				{Name: "exec", Add: []string{""}, Timeout: -time.Second, Types: []intel.IndicatorType{"ipv4", "bogus"}},
			}
		}, []string{"exec[1].add", "exec[1].timeout", "exec[1].name", "exec[1].types[1]"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := responders.DefaultConfig()
			tc.edit(&c)
			var got []string
			for _, fe := range confcheck.Fields(c.Validate()) {
				got = append(got, fe.Field)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("fields %v, want %v (%v)", got, tc.want, c.Validate())
			}
		})
	}
}

func TestEnabledOrder(t *testing.T) {
	c := responders.Config{DryRun: true, Nftables: responders.NftablesConfig{Enabled: true},
		DNS: responders.DNSConfig{Enabled: true}, Exec: []responders.ExecConfig{{}, {}}}
	if got, want := c.Enabled(), []string{"dry-run", "nftables", "dns", "exec"}; !slices.Equal(got, want) {
		t.Errorf("Enabled() = %v, want %v", got, want)
	}
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func main() {
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile("/var/tmp/postern-testbed/tls/ca.crt")
	pool.AppendCertsFromPEM(pem)
	c, err := imapclient.DialTLS("127.0.0.1:1993", &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		panic(err)
	}
	if err := c.Login("alice@example.test", os.Args[1]).Wait(); err != nil {
		panic(err)
	}
	items := &imap.FetchOptions{UID: true, Envelope: true, Flags: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true, InternalDate: true}
	sel, _ := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	var set50, set55 imap.UIDSet
	top := sel.UIDNext - 1
	set50.AddRange(top-49, top)
	set55.AddRange(top-54, 0)
	st := &imap.StatusOptions{NumMessages: true, NumUnseen: true}
	m := map[string][]time.Duration{}
	for i := 0; i < 220; i++ {
		t := time.Now()
		c.Fetch(set50, items).Collect()
		m["raw50"] = append(m["raw50"], time.Since(t))
		t = time.Now()
		c.Fetch(set55, items).Collect()
		m["raw55"] = append(m["raw55"], time.Since(t))
		t = time.Now()
		c.List("", "*", &imap.ListOptions{ReturnStatus: st, ReturnSpecialUse: true}).Collect()
		m["liststatus"] = append(m["liststatus"], time.Since(t))
		t = time.Now()
		c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		m["examine"] = append(m["examine"], time.Since(t))
		t = time.Now()
		l := c.List("", "*", &imap.ListOptions{ReturnStatus: st, ReturnSpecialUse: true})
		s := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true})
		f := c.Fetch(set55, items)
		l.Collect()
		s.Wait()
		f.Collect()
		m["pipelined"] = append(m["pipelined"], time.Since(t))
		t = time.Now()
		c.Select("Projects", &imap.SelectOptions{ReadOnly: true}).Wait()
		m["examine-other"] = append(m["examine-other"], time.Since(t))
		c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	}
	for _, k := range []string{"raw50", "raw55", "liststatus", "examine", "examine-other", "pipelined"} {
		v := m[k][20:]
		slices.Sort(v)
		fmt.Printf("%-14s p50 %.2f ms\n", k, float64(v[len(v)/2])/1e6)
	}
}

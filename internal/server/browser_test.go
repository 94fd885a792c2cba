package server

// Browser tests of the demo web app (clients.md): a real headless Chromium
// (Debian's chromium package) driven by chromedp against a real server,
// payment simulator, Postgres and Redis.
//
// Screenshots of the key states are written to $BROWSER_SCREENSHOTS when
// set, else to the test's artifact directory (kept with
// `go test -artifacts -outputdir DIR`). With UPDATE_SCREENSHOTS=1 the two
// shown in the README are copied to docs/screenshots/.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/payments/paysim"
)

// chromiumPath finds the browser: $CHROMIUM when set, else
// /usr/bin/chromium or chromium on PATH. A missing browser fails the test
// (never skips it): the browser is part of the test setup.
func chromiumPath(t *testing.T) string {
	t.Helper()
	const install = "install Debian's package (DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; " +
		"scripts/services.sh should do it for `make test`)"
	if p := os.Getenv("CHROMIUM"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			t.Fatalf("the browser tests need Chromium: $CHROMIUM=%s is not a file (%v); unset it and %s", p, err, install)
		}
		return p
	}
	if st, err := os.Stat("/usr/bin/chromium"); err == nil && !st.IsDir() {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatalf("the browser tests need Chromium, and /usr/bin/chromium is missing: %s, or set $CHROMIUM to a Chromium binary", install)
	return ""
}

// browser is one headless Chromium process.
type browser struct {
	t   *testing.T
	ctx context.Context // has a browser: children are tabs
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1200, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return &browser{t: t, ctx: ctx}
}

// tab is a page in its own browser context (its own cookies): one user.
type browserTab struct {
	t    *testing.T
	name string
	ctx  context.Context
	dir  string
}

func (b *browser) tab(name, dir string) *browserTab {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb := &browserTab{t: t, name: name, ctx: ctx, dir: dir}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	t.Cleanup(cancel)
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			t.Logf("[%s] page exception: %s %s", name, e.ExceptionDetails.Text, exceptionDescription(e.ExceptionDetails))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
				}
				t.Logf("[%s] console.%s: %s", name, e.Type, strings.Join(parts, " "))
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to tab %s: %v", name, err)
	}
	return tb
}

// do runs actions with a bound, failing the test with the page's state.
func (tb *browserTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.fail("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression into v.
func jsEval[T any](tb *browserTab, expr string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tb.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the DOM until the JavaScript predicate is truthy, within
// limit; it returns how long that took.
func (tb *browserTab) waitFor(what, predicate string, limit time.Duration) time.Duration {
	tb.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(tb.ctx, limit+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingTimeout(limit), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		tb.fail("waiting up to %s for %s: %v", limit, what, err)
	}
	return time.Since(start)
}

// fail saves a screenshot and the visible state of the page, then stops the test.
func (tb *browserTab) fail(format string, args ...any) {
	tb.t.Helper()
	tb.screenshot("FAILED-" + tb.name)
	ctx, cancel := context.WithTimeout(tb.ctx, 3*time.Second)
	defer cancel()
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
		`location.href + "\n" + document.body.innerText.slice(0, 3000)`))
	tb.t.Fatalf("[%s] "+format+"\npage:\n%s", append([]any{tb.name}, append(args, state)...)...)
}

// screenshot saves the page as dir/name.png.
func (tb *browserTab) screenshot(name string) string {
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	// FullScreenshot(100) is a PNG (a lower quality gives a JPEG).
	ext := ".jpg"
	if len(png) > 4 && string(png[1:4]) == "PNG" {
		ext = ".png"
	}
	p := filepath.Join(tb.dir, name+ext)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	return p
}

// text is the trimmed text of the first element matching the selector, "" if none.
func (tb *browserTab) text(sel string) string {
	tb.t.Helper()
	return jsEval[string](tb, fmt.Sprintf(`(document.querySelector(%q)?.textContent || '').trim()`, sel))
}

func (tb *browserTab) click(sel string) {
	tb.t.Helper()
	tb.do("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// doubleClick double-clicks where the element is, as a person does: two
// press/release pairs (click counts 1 and 2) at the same point. It aims at
// the point rather than at a DOM node, since a live update may re-render
// the page between the clicks.
func (tb *browserTab) doubleClick(sel string) {
	tb.t.Helper()
	tb.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.ScrollIntoView(chromedp.CSS(sel)))
	xy := jsEval[[]float64](tb, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`, sel))
	tb.do("double-click "+sel, chromedp.MouseClickXY(xy[0], xy[1]), chromedp.MouseClickXY(xy[0], xy[1], chromedp.ClickCount(2)))
}

func (tb *browserTab) typeInto(sel, text string) {
	tb.t.Helper()
	tb.do("type into "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Clear(chromedp.CSS(sel)),
		chromedp.SendKeys(chromedp.CSS(sel), text))
}

// signIn opens the app and signs in as one of the demo users from the picker.
func (tb *browserTab) signIn(base, user string) {
	tb.t.Helper()
	tb.do("open "+base, chromedp.Navigate(base+"/"))
	tb.click(fmt.Sprintf(`[data-testid="signin-%s"]`, user))
	tb.waitFor("the home screen", `document.querySelector('[data-testid="open-orders"]') !== null`, 20*time.Second)
	// Marks this page load: a reload would clear it.
	jsEval[bool](tb, `(window.__loadMark = 'loaded-once', true)`)
}

// notReloaded fails when the page was reloaded since signIn.
func (tb *browserTab) notReloaded() {
	tb.t.Helper()
	if got := jsEval[string](tb, `String(window.__loadMark)`); got != "loaded-once" {
		tb.fail("the page was reloaded (mark %q)", got)
	}
}

// eventLog is the ids of the live events the order page received, in order.
func (tb *browserTab) eventLog() []string {
	tb.t.Helper()
	return jsEval[[]string](tb, `[...document.querySelectorAll('[data-testid="event-log"] li[data-event-id]')].map((li) => li.dataset.eventId)`)
}

// screenshotDir is where the test writes its screenshots.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("BROWSER_SCREENSHOTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// publishScreenshots copies the README's screenshots to docs/screenshots
// when UPDATE_SCREENSHOTS=1.
func publishScreenshots(t *testing.T, files map[string]string) {
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	dst := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if src == "" {
			t.Errorf("no screenshot for %s", name)
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dst, name+filepath.Ext(src))
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("published %s", out)
	}
}

// browserStack is a BFF on a fixed address of our choosing (so that it can
// be restarted on the same address) and the payment simulator it charges.
type browserStack struct {
	t    *testing.T
	e    *env
	cfg  *config.Config
	addr string
	base string
	sim  *paysim.Server
	in   *instance
}

func newBrowserStack(t *testing.T, simLatency time.Duration) *browserStack {
	t.Helper()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &browserStack{t: t, e: e, addr: ln.Addr().String()}
	st.base = "http://" + st.addr
	st.cfg = e.config()

	sim, err := paysim.New(paysim.Config{
		WebhookURL:             st.base + "/webhooks/payments",
		Secret:                 []byte(st.cfg.WebhookSecrets[0]),
		Latency:                simLatency,
		DeliveryInitialBackoff: 100 * time.Millisecond,
		DeliveryMaxBackoff:     time.Second,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("paysim: %v", err)
	}
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = sim.Shutdown(ctx)
		ts.Close()
	})
	st.sim = sim
	st.cfg.PaymentsURL = ts.URL
	st.cfg.PaymentWorkers = 1
	st.cfg.StreamRetry = 250 * time.Millisecond // EventSource's reconnect delay
	st.cfg.ShutdownGrace = 3 * time.Second
	st.in = st.startOn(ln)
	return st
}

// startOn runs an instance on ln, like env.start does on a random port.
func (st *browserStack) startOn(ln net.Listener) *instance {
	t := st.t
	t.Helper()
	cfg := *st.cfg
	qc := &queryCounter{}
	logs := &logBuffer{}
	opt := Options{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PGTracer:    qc,
		CachePrefix: st.e.prefix,
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, &cfg, opt)
	if err != nil {
		cancel()
		_ = ln.Close()
		t.Fatalf("server: %v", err)
	}
	in := &instance{t: t, srv: srv, URL: "http://" + ln.Addr().String(), cfg: &cfg, queries: qc, logs: logs,
		cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(in.stop)
	return in
}

// restart stops the instance and starts a new one on the same address.
func (st *browserStack) restart(beforeStart func()) {
	st.t.Helper()
	st.in.stop()
	if beforeStart != nil {
		beforeStart()
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", st.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		st.t.Fatalf("listen again on %s: %v", st.addr, err)
	}
	st.in = st.startOn(ln)
}

// orderEvents lists the ids and types of an order's events in stream order.
func (st *browserStack) orderEvents(orderID string) (ids, types []string) {
	st.t.Helper()
	rows, err := st.in.db().Query(context.Background(),
		`SELECT position::text, type FROM order_events WHERE order_id = $1 ORDER BY position`, orderID)
	if err != nil {
		st.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, typ string
		if err := rows.Scan(&id, &typ); err != nil {
			st.t.Fatal(err)
		}
		ids, types = append(ids, id), append(types, typ)
	}
	if err := rows.Err(); err != nil {
		st.t.Fatal(err)
	}
	return ids, types
}

func (st *browserStack) count(sql string, args ...any) int {
	st.t.Helper()
	var n int
	if err := st.in.db().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		st.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// mutateAs runs a mutation as email against in, with an Idempotency-Key.
func browserMutateAs(t *testing.T, in *instance, email, query string, vars map[string]any) *gqlResponse {
	t.Helper()
	r := in.post(in.token(email), query, vars, "Idempotency-Key: browser-test-"+fmt.Sprint(time.Now().UnixNano()))
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("mutation as %s: status %d: %s", email, r.Status, r.Raw)
	}
	return r
}

func browserOrderVersion(t *testing.T, in *instance, email, id string) int {
	t.Helper()
	r := in.post(in.token(email), `query($id: ID!) { order(id: $id) { version } }`, map[string]any{"id": id})
	v, ok := field(r.Data, "order", "version").(float64)
	if !ok {
		t.Fatalf("order %s: %s", id, r.Raw)
	}
	return int(v)
}

const browserStatusIs = `(document.querySelector('[data-testid="order-status"]')?.textContent || '') === %q`

// TestBrowserLiveOrderAcrossStaffAndRestart: alice places and pays an order
// and sees it become PAID without reloading; staff, in a second browser
// context, ships it and alice's open page shows SHIPPED; the server is
// restarted on the same address while the order is delivered through
// another instance, and alice's page says "reconnecting", then catches up
// with every event exactly once.
func TestBrowserLiveOrderAcrossStaffAndRestart(t *testing.T) {
	chromiumPath(t) // fail first, before any setup, without a browser
	st := newBrowserStack(t, 50*time.Millisecond)
	dir := screenshotDir(t)
	b := newBrowser(t)
	alice := b.tab("alice", dir)
	staff := b.tab("staff", dir)
	shots := map[string]string{}

	// Sign in and place an order from the catalogue.
	alice.signIn(st.base, "alice")
	if got := alice.text(`[data-testid="viewer"]`); !strings.Contains(got, "CUSTOMER") {
		alice.fail("viewer shows %q", got)
	}
	alice.screenshot("01-alice-home")
	alice.click(`[data-testid="nav-shop"]`)
	alice.waitFor("the catalogue", `document.querySelectorAll('[data-testid^="qty-"]').length >= 2`, 20*time.Second)
	qty := jsEval[[]string](alice, `[...document.querySelectorAll('[data-testid^="qty-"]')].slice(0, 2).map((i) => i.dataset.testid)`)
	alice.typeInto(fmt.Sprintf(`[data-testid=%q]`, qty[0]), "2")
	alice.typeInto(fmt.Sprintf(`[data-testid=%q]`, qty[1]), "1")
	alice.typeInto(`[data-testid="ship-line1"]`, "1 Infinite Loop")
	alice.typeInto(`[data-testid="ship-city"]`, "Cupertino")
	alice.typeInto(`[data-testid="ship-postalCode"]`, "95014")
	alice.click(`[data-testid="place-order"]`)
	alice.waitFor("the new order's page", fmt.Sprintf(browserStatusIs, "PENDING_PAYMENT"), 20*time.Second)
	alice.waitFor("the live badge", `document.querySelector('[data-testid="live-badge"]').dataset.state === 'live'`, 20*time.Second)
	orderID := jsEval[string](alice, `decodeURIComponent(location.hash.replace('#/order/', ''))`)
	number := alice.text(`[data-testid="order-number"]`)
	if n := jsEval[int](alice, `document.querySelectorAll('[data-testid="order-lines"] tbody tr').length`); n != 2 {
		alice.fail("order %s has %d lines, want 2", number, n)
	}
	alice.notReloaded()

	// Pay: the worker charges the simulator, its webhook makes the order PAID.
	alice.click(`[data-testid="action-PAY"]`)
	took := alice.waitFor("PAID", fmt.Sprintf(browserStatusIs, "PAID"), 30*time.Second)
	t.Logf("order %s PAID on alice's page %s after the click", number, took.Round(time.Millisecond))
	if got := alice.text(`[data-testid="payment-status"]`); got != "SUCCEEDED" {
		alice.fail("payment status %q after PAID", got)
	}
	alice.notReloaded()
	alice.screenshot("02-alice-order-paid")

	// Staff ships it from another browser context; alice's open page follows.
	staff.signIn(st.base, "staff")
	staff.do("open the order", chromedp.Navigate(st.base+"/#/order/"+orderID))
	staff.typeInto(`[data-testid="tracking-input"]`, "1Z999AA10123456784")
	shots["staff-ships-order"] = staff.screenshot("03-staff-before-ship")
	staff.click(`[data-testid="action-SHIP"]`)
	shipped := time.Now()
	alice.waitFor("SHIPPED on alice's page", fmt.Sprintf(browserStatusIs, "SHIPPED"), 20*time.Second)
	t.Logf("SHIPPED on alice's page %s after staff's click (no reload)", time.Since(shipped).Round(time.Millisecond))
	if got := alice.text(`[data-testid="tracking-number"]`); got != "1Z999AA10123456784" {
		alice.fail("tracking number %q", got)
	}
	alice.notReloaded()
	staff.waitFor("the deliver action for staff", `document.querySelector('[data-testid="action-DELIVER"]') !== null`, 20*time.Second)
	alice.screenshot("04-alice-shipped-live")
	staff.screenshot("05-staff-shipped")

	// Restart: while this address is down the order is delivered through
	// another instance; the page reconnects to the new instance on the
	// same address and gets the missed event from the replay.
	before := alice.eventLog()
	st.restart(func() {
		alice.waitFor(`"reconnecting"`, `document.querySelector('[data-testid="live-badge"]').dataset.state === 'reconnecting'`, 20*time.Second)
		if got := alice.text(`[data-testid="live-badge"]`); !strings.HasPrefix(got, "reconnecting") {
			alice.fail("badge says %q while the server is down", got)
		}
		alice.screenshot("06-alice-reconnecting")
		other := st.e.start(st.e.config(), Options{})
		v := browserOrderVersion(t, other, "staff@example.com", orderID)
		browserMutateAs(t, other, "staff@example.com", `mutation($id: ID!, $v: Int!) { deliverOrder(id: $id, expectedVersion: $v) { order { status } } }`,
			map[string]any{"id": orderID, "v": v})
		other.stop()
		if got := alice.text(`[data-testid="order-status"]`); got != "SHIPPED" {
			alice.fail("status %q while the server is down", got)
		}
	})
	alice.waitFor("DELIVERED after the restart", fmt.Sprintf(browserStatusIs, "DELIVERED"), 30*time.Second)
	alice.waitFor("live again", `document.querySelector('[data-testid="live-badge"]').dataset.state === 'live'`, 20*time.Second)
	alice.notReloaded()
	shots["customer-order-live"] = alice.screenshot("07-alice-caught-up")

	// Every event after the screen read, in order, once: none missed across
	// the restart, none twice.
	ids, types := st.orderEvents(orderID)
	if len(types) == 0 || types[0] != "ORDER_PLACED" {
		t.Fatalf("events of %s: %v", orderID, types)
	}
	want := ids[1:]
	alice.waitFor("the delivered event in the page's log",
		fmt.Sprintf(`[...document.querySelectorAll('[data-testid="event-log"] li')].some((li) => li.dataset.eventId === %q)`, ids[len(ids)-1]), 5*time.Second)
	got := alice.eventLog()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events received by alice's page: %v (before the restart %v); want %v (%v)", got, before, want, types[1:])
	}
	t.Logf("alice's page received %d events %v (types %v), %d before the restart", len(got), got, types[1:], len(before))
	publishScreenshots(t, shots)
}

// TestBrowserDoubleClickPayCreatesOnePayment: a double click on Pay sends
// one payment request: one charge job, one PAYMENT_REQUESTED event, one
// charge at the provider.
func TestBrowserDoubleClickPayCreatesOnePayment(t *testing.T) {
	chromiumPath(t) // fail first, before any setup, without a browser
	st := newBrowserStack(t, 300*time.Millisecond)
	dir := screenshotDir(t)
	b := newBrowser(t)
	alice := b.tab("alice", dir)
	staff := b.tab("staff", dir)

	var orderID, number string
	err := st.in.db().QueryRow(context.Background(), `SELECT o.id::text, o.number FROM orders o JOIN users u ON u.id = o.customer_id
		WHERE u.email = 'alice@example.com' AND o.status = 'PENDING_PAYMENT' AND o.payment_status = 'UNPAID'
		ORDER BY o.created_at DESC LIMIT 1`).Scan(&orderID, &number)
	if err != nil {
		t.Fatalf("a seeded unpaid order of alice: %v", err)
	}
	jobs := `SELECT count(*) FROM charge_jobs WHERE order_id = $1`
	requested := `SELECT count(*) FROM order_events WHERE order_id = $1 AND type = 'PAYMENT_REQUESTED'`
	jobs0, requested0 := st.count(jobs, orderID), st.count(requested, orderID)

	alice.signIn(st.base, "alice")
	// The orders list: filter by status, then open the order.
	alice.click(`[data-testid="nav-orders"]`)
	alice.waitFor("the orders list", `document.querySelector('[data-testid="orders-table"]') !== null`, 20*time.Second)
	alice.do("filter PENDING_PAYMENT", chromedp.SetValue(chromedp.CSS(`[data-testid="status-filter"]`), "PENDING_PAYMENT"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid="status-filter"]').dispatchEvent(new Event('change'))`))
	alice.waitFor("the filtered list", `location.hash === '#/orders?status=PENDING_PAYMENT' && document.querySelector('[data-testid="orders-table"]') !== null &&
		[...document.querySelectorAll('[data-testid="orders-table"] tbody tr')].every((tr) => tr.textContent.includes('PENDING_PAYMENT'))`, 20*time.Second)
	alice.do("open the order", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/order/' + encodeURIComponent(%q)`, orderID)))
	alice.waitFor("the order page", fmt.Sprintf(browserStatusIs, "PENDING_PAYMENT")+
		` && document.querySelector('[data-testid="action-PAY"]') !== null && document.querySelector('[data-testid="live-badge"]').dataset.state === 'live'`, 20*time.Second)

	jsEval[bool](alice, `(window.__input = {pointerdown: 0, click: 0}, ['pointerdown', 'click'].forEach((k) => window.addEventListener(k, () => window.__input[k]++, true)), true)`)
	if n := jsEval[int](alice, `document.querySelectorAll('[data-testid="event-log"] li[data-event="reset"]').length`); n > 0 {
		// The viewer's last event is older than the replay window (the
		// seed's timelines are), so the screen's lastEventId is "expired".
		t.Logf("the order page's stream started with %d reset(s) and a refetch", n)
	}
	// Staff pages through every order, 5 at a time.
	staff.signIn(st.base, "staff")
	total := st.count(`SELECT count(*) FROM orders`)
	staff.do("open the orders list", chromedp.Evaluate[chromedp.Void](`location.hash = '#/orders?first=5'`))
	rows := `[...document.querySelectorAll('[data-testid="orders-table"] tbody tr')].map((tr) => tr.dataset.testid)`
	staff.waitFor("the first page", `document.querySelectorAll('[data-testid="orders-table"] tbody tr').length === 5`, 20*time.Second)
	seen := map[string]bool{}
	for page := 1; ; page++ {
		got := jsEval[[]string](staff, rows)
		if len(got) != min(5*page, total) {
			staff.fail("page %d shows %d rows, want %d", page, len(got), min(5*page, total))
		}
		for _, r := range got[5*(page-1):] {
			if seen[r] {
				staff.fail("%s shown twice", r)
			}
			seen[r] = true
		}
		if want := fmt.Sprintf("%d of %d", len(got), total); staff.text(`[data-testid="orders-total"]`) != want {
			staff.fail("total says %q, want %q", staff.text(`[data-testid="orders-total"]`), want)
		}
		if len(got) == total {
			if !jsEval[bool](staff, `document.querySelector('[data-testid="load-more"]').hidden`) {
				staff.fail("load more is shown after the last page")
			}
			break
		}
		staff.click(`[data-testid="load-more"]`)
		staff.waitFor("the next page", fmt.Sprintf(`document.querySelectorAll('[data-testid="orders-table"] tbody tr').length === %d`, min(5*(page+1), total)), 20*time.Second)
	}

	// Staff watches the list of PAID orders, which updates by itself.
	staff.do("open the PAID orders", chromedp.Evaluate[chromedp.Void](`location.hash = '#/orders?status=PAID'`))
	staff.waitFor("the PAID list, live", `document.querySelector('[data-testid="orders-table"]') !== null && document.querySelector('[data-testid="live-badge"]').dataset.state === 'live'`, 20*time.Second)
	row := fmt.Sprintf(`document.querySelector('[data-testid="order-row-%s"]') !== null`, number)
	if jsEval[bool](staff, row) {
		staff.fail("order %s is in the PAID list before it is paid", number)
	}

	alice.doubleClick(`[data-testid="action-PAY"]`)
	if in := jsEval[map[string]int](alice, `window.__input`); in["pointerdown"] != 2 {
		t.Fatalf("the double click pressed the button %d times, want 2 (%v)", in["pointerdown"], in)
	}
	alice.waitFor("PAID", fmt.Sprintf(browserStatusIs, "PAID"), 30*time.Second)
	alice.notReloaded()
	alice.screenshot("01-alice-paid-after-double-click")
	staff.waitFor("the paid order in staff's PAID list", row, 20*time.Second)
	staff.notReloaded()
	staff.screenshot("02-staff-paid-list-live")

	if got := st.count(jobs, orderID) - jobs0; got != 1 {
		t.Errorf("%d charge jobs for one double click, want 1", got)
	}
	if got := st.count(requested, orderID) - requested0; got != 1 {
		t.Errorf("%d PAYMENT_REQUESTED events for one double click, want 1", got)
	}
	stats := st.sim.Stats()
	if stats.ChargesCreated != 1 {
		t.Errorf("the provider created %d charges, want 1 (stats %+v)", stats.ChargesCreated, stats)
	}
	if msg := alice.text(`[data-testid="error-message"]`); jsEval[bool](alice, `!document.querySelector('[data-testid="error-banner"]').hidden`) {
		t.Errorf("error shown after the double click: %s", msg)
	}

	// A double click that gets past the disabled button: the page's own
	// api module sends the same payOrder twice at once. The second call
	// reuses the first one's Idempotency-Key while it is in flight, so the
	// server runs it once (IN_USE, retried, then the stored response).
	var productID string
	if err := st.in.db().QueryRow(context.Background(), `SELECT id::text FROM products ORDER BY sku LIMIT 1`).Scan(&productID); err != nil {
		t.Fatal(err)
	}
	placed := browserMutateAs(t, st.in, "alice@example.com", `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { order { id version } } }`,
		map[string]any{"in": map[string]any{"lines": []any{map[string]any{"productId": productID, "quantity": 1}},
			"shippingAddress": map[string]any{"name": "Alice", "line1": "1 Market Street", "city": "San Francisco", "postalCode": "94105", "country": "US"}}})
	second, _ := field(placed.Data, "placeOrder", "order", "id").(string)
	results := jsEval[[]string](alice, fmt.Sprintf(`(async () => {
		const api = await import('/js/api.js');
		const Q = await import('/js/queries.js');
		const keys = [];
		const fetch = (url, init) => { keys.push(init.headers['Idempotency-Key']); return window.fetch(url, init); };
		const pay = () => api.mutate(Q.PAY_ORDER, { id: %q, expectedVersion: 1 }, { fetch })
			.then((d) => d.payOrder.order.paymentStatus, (e) => 'error ' + e.code);
		const out = await Promise.all([pay(), pay()]);
		return out.concat([String(new Set(keys).size), String(keys.length)]);
	})()`, second), chromedp.EvalAwaitPromise)
	t.Logf("two concurrent payOrder calls from the page: results %v, distinct keys %s, requests %s", results[:2], results[2], results[3])
	if results[2] != "1" {
		t.Errorf("the two calls used %s idempotency keys, want 1", results[2])
	}
	for _, r := range results[:2] {
		if strings.HasPrefix(r, "error") {
			t.Errorf("a payOrder call failed: %s", r)
		}
	}
	if got := st.count(jobs, second); got != 1 {
		t.Errorf("%d charge jobs for two concurrent calls, want 1", got)
	}
	if got := st.count(requested, second); got != 1 {
		t.Errorf("%d PAYMENT_REQUESTED events for two concurrent calls, want 1", got)
	}
}

// TestBrowserConflictRefetchesAndSaysWhatChanged: a page that missed a
// change (its event stream is held) acts on an old version; the
// CONFLICT makes it refetch, say what changed and show the request id.
func TestBrowserConflictRefetchesAndSaysWhatChanged(t *testing.T) {
	chromiumPath(t) // fail first, before any setup, without a browser
	st := newBrowserStack(t, 0)
	dir := screenshotDir(t)
	b := newBrowser(t)
	alice := b.tab("alice", dir)
	var orderID string
	err := st.in.db().QueryRow(context.Background(), `SELECT o.id::text FROM orders o JOIN users u ON u.id = o.customer_id
		WHERE u.email = 'alice@example.com' AND o.status = 'PENDING_PAYMENT' ORDER BY o.created_at DESC LIMIT 1`).Scan(&orderID)
	if err != nil {
		t.Fatalf("a seeded pending order of alice: %v", err)
	}
	alice.signIn(st.base, "alice")
	holdEvents(t, alice, st.base)
	alice.do("open the order", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/order/' + encodeURIComponent(%q)`, orderID)))
	alice.waitFor("the order page", `document.querySelector('[data-testid="action-CANCEL"]') !== null`, 20*time.Second)
	if got := jsEval[string](alice, `document.querySelector('[data-testid="live-badge"]').dataset.state`); got != "connecting" {
		alice.fail("badge state %q with the stream held, want connecting", got)
	}

	// Meanwhile the order changes elsewhere (alice's phone).
	v := browserOrderVersion(t, st.in, "alice@example.com", orderID)
	browserMutateAs(t, st.in, "alice@example.com", `mutation($id: ID!, $v: Int!, $a: AddressInput!) { updateShippingAddress(id: $id, expectedVersion: $v, address: $a) { order { version } } }`,
		map[string]any{"id": orderID, "v": v, "a": map[string]any{"name": "Alice", "line1": "2 Elsewhere Rd", "city": "Oslo", "postalCode": "0150", "country": "NO"}})
	if got := alice.text(`[data-testid="shipping-address"]`); strings.Contains(got, "Elsewhere") {
		alice.fail("the page saw the change without its stream: %q", got)
	}

	alice.click(`[data-testid="action-CANCEL"]`)
	alice.waitFor("the conflict message", `!document.querySelector('[data-testid="error-banner"]').hidden`, 20*time.Second)
	msg := alice.text(`[data-testid="error-message"]`)
	reqID := alice.text(`[data-testid="error-request-id"]`)
	for _, want := range []string{"changed meanwhile", "shipping address", fmt.Sprintf("version %d → %d", v, v+1), "CONFLICT"} {
		if !strings.Contains(msg, want) {
			alice.fail("conflict message %q lacks %q", msg, want)
		}
	}
	if !strings.HasPrefix(reqID, "requestId ") || len(reqID) < len("requestId ")+8 {
		alice.fail("conflict shows request id %q", reqID)
	}
	alice.waitFor("the refetched address", `document.querySelector('[data-testid="shipping-address"]').textContent.includes('2 Elsewhere Rd')`, 5*time.Second)
	if got := alice.text(`[data-testid="order-status"]`); got != "PENDING_PAYMENT" {
		alice.fail("status %q: the cancel must not have happened", got)
	}
	alice.screenshot("01-alice-conflict")
	if n := st.count(`SELECT count(*) FROM order_events WHERE order_id = $1 AND type = 'ORDER_CANCELLED'`, orderID); n != 0 {
		t.Errorf("%d cancellations after a conflict", n)
	}
}

// holdEvents pauses the tab's requests to GET /events for good: the page's
// EventSource stays "connecting" and never learns of a change. (A blocked
// request would fail, and the page would then re-read its screen.)
func holdEvents(t *testing.T, tb *browserTab, base string) {
	t.Helper()
	_, err := chromedp.Call(tb.ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: base + "/events*"}}})
	if err != nil {
		t.Fatalf("fetch.enable: %v", err)
	}
}

func exceptionDescription(d *runtime.ExceptionDetails) string {
	if d == nil || d.Exception == nil {
		return ""
	}
	return d.Exception.Description
}

package payments

// Test helpers of the internal tests, for the end-to-end tests of package
// payments_test (which cannot be internal: they use paysim, which imports
// payments).
var (
	WaitFor     = waitFor
	MetricValue = metricValue
)

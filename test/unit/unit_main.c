/*
 * unit_main.c — the unit test binary: the whole program (without its main) plus the tests, one
 * translation unit, so tests can reach every static function.
 */
#define WC_NO_MAIN 1
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "../../worker-controller.c"
#include "../err_names.h"
#include "unit.h"
#include "support.c"

#include "test_base.c"
#include "test_http.c"
#include "test_watch.c"
#include "test_kubeconfig.c"
#include "test_decide.c"
#include "test_workqueue.c"
#include "test_config.c"
#include "test_rbac.c"
#include "test_sandbox_unit.c"
#include "test_packaging.c"
#include "test_hostile.c"
#include "test_shell.c"
#include "test_golden.c"
#include "test_backend.c"
#include "test_agent_sandbox.c"
#include "test_explain.c"
#include "test_metrics.c"

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = unit_run(argc, argv);
    curl_global_cleanup();
    return rc;
}

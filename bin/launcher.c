/* The `smith` of a checkout's .venv (scripts/setup.sh builds it): block SIGINT and SIGTERM,
 * then exec the Python script bin/smith, which installs its handlers first and unblocks.
 *
 * Why: from exec to the script's first line the interpreter starts (and imports `site`),
 * some 20-50 ms in which a signal gets Python's default action: the process is killed
 * silently, or Python prints a KeyboardInterrupt of its own start-up. No Python code can
 * run before that, and a shell wrapper can only ignore a signal (an ignored signal is
 * lost; SIGTERM must still end the run with 143). A blocked signal is kept pending across
 * execve and delivered the moment the script unblocks it: to the handler, as one line.
 * What is left is this program's own start, a fraction of a millisecond.
 *
 * Not the only way to run smith: `pip install` gives the Python script itself (the
 * interpreter's start then keeps the default actions), and `python -m smith` works too.
 * SMITH_PYTHON and SMITH_SCRIPT are the interpreter and the script, set when built.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stops, NULL) != 0) {
        perror("smith: sigprocmask");
        return 127;
    }
    /* python SCRIPT ARGS...: argv[0] stays the interpreter's path, by which it finds the
     * virtual environment (pyvenv.cfg beside it). */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (args == NULL) {
        perror("smith");
        return 127;
    }
    args[0] = SMITH_PYTHON;
    args[1] = SMITH_SCRIPT;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    execv(SMITH_PYTHON, args);
    perror("smith: " SMITH_PYTHON);
    return 127;
}

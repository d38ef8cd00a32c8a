/* cli_bench.c — placeholder replaced below. */
#include "cli/cli.h"
#include <stdio.h>
int cli_bench_main(int argc, char **argv)
{
	fprintf(stderr, "kizuna bench: not built yet\n");
	return 2;
}

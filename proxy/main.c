/* main.c — placeholder until the process module lands. */
#include <stdio.h>
int main(void)
{
    puts("pgfunnel (skeleton)");
    return 0;
}

from abrl_deploy.cli import main

main()
